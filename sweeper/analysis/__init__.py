"""What the data support: the noise model, the best configuration, importance, the decay axis.

Pure: numbers in, NamedTuples out. Nothing here imports Plotly or touches storage; the
conventions of sweeper's trials (param and attribute names) are read in
``sweeper.dashboard.data``, which hands this package plain observations.
"""
