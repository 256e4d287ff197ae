"""Running sweeps on clusters: SLURM submission and the fleet's status."""
