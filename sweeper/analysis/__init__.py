"""What the data support: the noise model, the claims (matters / does not matter /
inconclusive), the best configuration corrected for selection, importance, the decoupling
ridge, the decay axis.

Pure: numbers in, NamedTuples out. Nothing here imports Plotly or touches storage; a
snapshot's trials are read as plain observations in ``analysis/study_model.py``, the one
place this package meets ``sweeper.snapshot``.
"""
