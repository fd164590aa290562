#!/usr/bin/env bash
# Multi-process training on one or more nodes (torchrun).
#
#   bash tools/dist_train.sh CONFIG GPUS [train.py options]
#
# GPUS is the number of processes on this node (GPUs, or CPU processes on a
# machine without CUDA, which train with the gloo backend).
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
source "$(dirname "$0")/_python.sh"

if [ -z "$CONFIG" ] || [ -z "$GPUS" ]; then
  echo "usage: bash $0 CONFIG GPUS [train.py options]" >&2
  exit 2
fi

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
