#!/bin/bash
# SIRI on veRL on a Ray cluster started by hand (no scheduler): one `ray start` per node, then
# `siri train --engine verl` on the head, where veRL's trainer joins the running cluster (docs/scaling-out.md).
#
#   on every worker node:  bash examples/ray-verl.sh worker HEAD_IP
#   on the head node:      NNODES=2 bash examples/ray-verl.sh head [CONFIG] [RUN_DIR] [key=value overrides...]
#   DRY_RUN=1 bash examples/ray-verl.sh head [CONFIG] [RUN_DIR] ...   # starts nothing: the plan and siri's own
#                                                                     # --dry-run (the veRL command line)
#
# RUN_DIR must be on a filesystem every node sees, and the environment (siri-rl[verl]) the same on every node.
set -euo pipefail

ROLE=${1:?usage: ray-verl.sh head [CONFIG] [RUN_DIR] [overrides...] | ray-verl.sh worker HEAD_IP}
shift
NNODES=${NNODES:-2}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
RAY_PORT=${RAY_PORT:-6379}

case "$ROLE" in
worker)
    HEAD_IP=${1:?usage: ray-verl.sh worker HEAD_IP}
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        echo "plan: ray start --address=$HEAD_IP:$RAY_PORT --num-gpus=$GPUS_PER_NODE --block"
        exit 0
    fi
    exec ray start --address="$HEAD_IP:$RAY_PORT" --num-gpus="$GPUS_PER_NODE" --block
    ;;
head)
    CONFIG=${1:-r1-distill-7b-siri-cosine640}
    RUN_DIR=${2:-runs/${CONFIG}}
    shift $(( $# < 2 ? $# : 2 ))
    TRAIN=(siri train --config "$CONFIG" --engine verl -o "$RUN_DIR" "verl.trainer.nnodes=$NNODES"
           "verl.trainer.n_gpus_per_node=$GPUS_PER_NODE" "$@")
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        echo "plan: ray start --head --port=$RAY_PORT --num-gpus=$GPUS_PER_NODE, then wait for $NNODES nodes"
        echo "plan: ${TRAIN[*]}"
        exec "${TRAIN[@]}" --dry-run
    fi
    ray start --head --port="$RAY_PORT" --num-gpus="$GPUS_PER_NODE"
    # veRL's main_ppo calls ray.init() (verl/trainer/main_ppo.py:57-74); with RAY_ADDRESS=auto it joins the cluster
    # started on this node, and fails rather than starting a private one (ray/_private/worker.py:1522-1530).
    export RAY_ADDRESS=auto
    echo "Ray head started; on each other node run: bash examples/ray-verl.sh worker <this node's IP>"
    for _ in $(seq 120); do   # wait (at most 10 minutes) until every node has joined
        alive=$(python -c "import ray; ray.init(address='$RAY_ADDRESS', logging_level='ERROR'); print(sum(n['Alive'] for n in ray.nodes()))" 2>/dev/null || echo 0)
        [[ "$alive" -ge "$NNODES" ]] && break
        sleep 5
    done
    [[ "$alive" -ge "$NNODES" ]] || { echo "error: only $alive of $NNODES nodes joined the Ray cluster" >&2; exit 1; }
    exec "${TRAIN[@]}"
    ;;
*)
    echo "error: the first argument is head or worker, got '$ROLE'" >&2
    exit 2
    ;;
esac
