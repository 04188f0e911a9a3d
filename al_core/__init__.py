"""al_core: one active-learning run, from data to result shard. Knows nothing of SLURM."""
