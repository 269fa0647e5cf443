"""CIFAR-10's 32 px images upsampled: how much does the resolution buy a linear probe of lite0?

Run: ./run python experiments/cifar10-resolution/resolution.py
"""
import time, torch, numpy as np, ftlib
from ftlib.probe import extract_features
from ftlib.backbones import load_backbone
torch.set_flush_denormal(True)
bb = load_backbone("timm/tf_efficientnet_lite0", num_classes=10)
for res in [48, 64, 96, 128]:
    t=time.time()
    ds = ftlib.load_dataset("cifar10", shots=100, seed=0, resolution=res, max_test_per_class=50)
    t0=time.time()
    tr = extract_features(bb, ds.train); te = extract_features(bb, ds.test)
    t1=time.time()
    from sklearn.linear_model import LogisticRegression
    X=tr.numpy(); Xt=te.numpy()
    n=np.linalg.norm(X,axis=1,keepdims=True); nt=np.linalg.norm(Xt,axis=1,keepdims=True)
    clf=LogisticRegression(C=1,max_iter=1000).fit(X/n, ds.train.labels.numpy())
    acc=(clf.predict(Xt/nt)==ds.test.labels.numpy()).mean()
    print(res, "px: probe accuracy", round(float(acc), 3), "source", ds.origin, flush=True)
