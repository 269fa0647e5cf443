"""Maintenance tools that rewrite the repository's own files: the README's generated blocks
(``python -m tools.readme``, ``./run readme``) and the executed notebooks (``python -m tools.notebooks``,
``./run notebooks``). Not part of the ``ftlib`` package."""
