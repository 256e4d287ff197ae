"""Running sweeps on clusters: SLURM job arrays and the fleet's status."""
