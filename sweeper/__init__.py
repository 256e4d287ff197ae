"""sweeper: an lr x weight-decay sweep service for AdamW.

Studies live in PostgreSQL through Optuna; each trial trains the tutorial's SimpleCNN on
CIFAR-10 with the project's fused AdamW; Plotly views show how lr and wd interact.
"""

__version__ = "0.1.0"
