"""Which knobs make a bare lite0 training step faster on this CPU: batch size, threads, bf16, layout, compile?

Bare steps (timm tf_efficientnet_lite0, random weights, 10 classes, SGD momentum 0.9, frozen-BatchNorm eval mode,
one fixed random batch), images per second after 3 warm-up steps, each configuration in a fresh process so that
thread pools and allocator state do not carry over. Nothing of ftlib is imported: this measures the machine.

Run: ./run python experiments/cpu-step-levers/levers.py > experiments/cpu-step-levers/levers.txt
"""
import subprocess
import sys

CONFIGS = [  # threads, batch, resolution, dtype, layout, compile
    (2, 32, 48, "fp32", "cl", 0), (2, 64, 48, "fp32", "cl", 0), (2, 128, 48, "fp32", "cl", 0),
    (2, 256, 48, "fp32", "cl", 0), (1, 32, 48, "fp32", "cl", 0), (1, 64, 48, "fp32", "cl", 0),
    (1, 128, 48, "fp32", "cl", 0), (2, 32, 48, "bf16", "cl", 0), (2, 128, 48, "bf16", "cl", 0),
    (2, 32, 48, "fp32", "nchw", 0), (2, 32, 48, "fp32", "cl", 1),
    (2, 32, 128, "fp32", "cl", 0), (2, 64, 128, "fp32", "cl", 0), (1, 32, 128, "fp32", "cl", 0),
]

STEP = r"""
import sys, time, torch, timm
threads, batch, res, dtype, layout, comp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
torch.manual_seed(0)
torch.set_num_threads(threads)
fmt = torch.channels_last if layout == "cl" else torch.contiguous_format
m = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10).to(memory_format=fmt)
m.train()
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.eval()
if comp:
    m = torch.compile(m)
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(batch, 3, res, res).contiguous(memory_format=fmt)
y = torch.randint(0, 10, (batch,))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        loss = torch.nn.functional.cross_entropy(m(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
t0 = time.perf_counter()
for _ in range(3):
    step()
warm = time.perf_counter() - t0
n = max(3, 600 // batch)
t = time.perf_counter()
for _ in range(n):
    step()
print(f"{n * batch / (time.perf_counter() - t):.1f} {warm:.1f}")
"""

if __name__ == "__main__":
    import torch

    print(f"torch {torch.__version__}; {torch.backends.cpu.get_cpu_capability()}")
    print("| threads | batch | px | dtype | layout | compiled | images/s | warm-up s |")
    print("|---:|---:|---:|---|---|---|---:|---:|")
    for cfg in CONFIGS:
        out = subprocess.run([sys.executable, "-c", STEP, *map(str, cfg)], capture_output=True, text=True)
        rate, warm = out.stdout.split()[-2:] if out.returncode == 0 else ("failed", "-")
        t, b, r, d, lay, c = cfg
        print(f"| {t} | {b} | {r} | {d} | {'channels-last' if lay == 'cl' else 'NCHW'} | {'yes' if c else 'no'} | "
              f"{rate} | {warm} |", flush=True)
