#!/bin/bash

# Parameters
#SBATCH --array=0-11%4
#SBATCH --constraint=gpu16
#SBATCH --cpus-per-task=4
#SBATCH --error=<LOG_DIR>/%A_%a_0_log.err
#SBATCH --gpus=1
#SBATCH --job-name=al-smoke
#SBATCH --mem=32G
#SBATCH --nodes=1
#SBATCH --open-mode=append
#SBATCH --output=<LOG_DIR>/%A_%a_0_log.out
#SBATCH --partition=pg
#SBATCH --requeue
#SBATCH --signal=USR2@120
#SBATCH --time=1440

# setup
source /etc/profile
module load anaconda3/2023.03/default
source /encs/pkg/anaconda3-2023.03/root/etc/profile.d/conda.sh
conda activate "/speed-scratch/$USER/envs/al-sweep"
export TMPDIR=/speed-scratch/$USER/tmp && mkdir -p $TMPDIR
export PYTHONPATH=<REPO>${PYTHONPATH:+:$PYTHONPATH}
export AL_EXPECT_GPU=1

# command
export SUBMITIT_EXECUTOR=slurm
srun --unbuffered --output <LOG_DIR>/%A_%a_%t_log.out --error <LOG_DIR>/%A_%a_%t_log.err --cpus-per-task=4 "/speed-scratch/$USER/envs/al-sweep/bin/python" -u -m submitit.core._submit <LOG_DIR>
