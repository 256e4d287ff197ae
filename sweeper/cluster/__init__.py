"""Running workers through cluster schedulers (SLURM job arrays)."""
