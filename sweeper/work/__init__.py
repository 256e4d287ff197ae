"""A trial's life, written once: claim, train, report, prune or finish, re-queue.

``worker`` (K >= 1 slots), ``slot`` (one claimed trial), ``attrs`` (the keys trials and
studies store), ``checkpoints``, ``requeue`` (stale and interrupted trials), ``progress``
(the lines a worker prints), ``provenance`` and ``launch`` (many workers on one host).
Importing this package imports none of them.
"""
