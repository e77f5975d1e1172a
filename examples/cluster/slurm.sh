#!/usr/bin/env bash
# A Ray cluster inside one SLURM allocation, then one alseg experiment on it. UNTESTED here
# (no SLURM on the development machine); adapt partitions, modules and paths to your site.
# The run directory and the dataset must be on a filesystem every node sees (e.g. /scratch).
#SBATCH --job-name=alseg-loop
#SBATCH --nodes=3
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --gpus-per-node=4
#SBATCH --time=24:00:00
set -euo pipefail
source .venv/bin/activate                      # made by `make install` on the shared filesystem
nodes=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
head=${nodes[0]}
port=6379
srun --nodes=1 --ntasks=1 -w "$head" ray start --head --port=$port --block &
sleep 20
for node in "${nodes[@]:1}"; do
  srun --nodes=1 --ntasks=1 -w "$node" ray start --address="$head:$port" --block &
done
sleep 20
alseg loop -o /scratch/$USER/runs/acdc-paper --dataset /scratch/$USER/acdc256.zarr --preset paper \
  --methods random,coreset,gcl-coreset --pretrain --executor ray --ray-address "$head:$port" \
  --gpus-per-train 0.25 --gpus-per-pretrain 1 --cpus-per-task 4 --device auto
