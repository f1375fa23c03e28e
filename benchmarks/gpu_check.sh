#!/usr/bin/env bash
# The GPU check, one script for the GPU machine (JAX and PyTorch there, no TensorFlow), in
# about 10 minutes. From the repository root:
#
#   bash benchmarks/gpu_wheels.sh            # here, once: the dependencies the machine lacks
#   cp ../shared/data/jh-simple-dataset.csv .gpu/   # the course's data (never committed)
#   bash benchmarks/gpu_check.sh OUT_FOLDER  # there, with .gpu carried
#
# It runs the trainer's tests on the GPU (KERAS_BACKEND=jax), the evaluation speed against the
# course's Keras fit on the same GPU, the course's 30-trial search (networks up to 1M
# parameters) with --gpus all and 1, 2 and 4 trials per GPU, and one search whose networks
# cannot fit in the GPU's memory, whose trials must be recorded oom while the search goes on.
# Every result goes to OUT_FOLDER/gpu-check.txt; `--dry-run` runs each step on a small budget
# (on a CPU too), to check the script before a GPU is at hand.
set -uo pipefail
out=${1:-benchmarks/results/gpu}
dry=0
[ "${2:-}" = "--dry-run" ] && dry=1
mkdir -p "$out"
log="$out/gpu-check.txt"
: >"$log"
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
wheels=${GPU_WHEELS:-.gpu/wheels}  # another folder for a dry run on another Python
if [ -d "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$wheels"/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
data=.gpu/jh-simple-dataset.csv
[ -f "$data" ] || data=../shared/data/jh-simple-dataset.csv
tuner=(python3 -m tuner.cli.commands)

step() {  # step NAME SECONDS STDOUT COMMAND...: run with a time limit; stderr to the log,
    local name=$1 limit=$2 stdout=$3  # stdout to the file STDOUT (- for the log too)
    shift 3
    [ "$stdout" = - ] && stdout=$log
    echo "== $name" | tee -a "$log"
    local started=$SECONDS
    timeout "$limit" "$@" >>"$stdout" 2>>"$log"
    echo "== $name: exit $? in $((SECONDS - started)) s" | tee -a "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no GPU"
  python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)"
} >>"$log" 2>&1

step "trainer tests, KERAS_BACKEND=$KERAS_BACKEND" 150 - \
    python3 -m pytest -q -p no:cacheprovider tests/test_training.py tests/test_ensemble.py

points=8 reps=1
[ $dry = 1 ] && points=2
step "evaluation speed against the course's Keras fit" 200 - \
    python3 benchmarks/evaluate_speed.py --points $points --reps $reps --data "$data" \
    --backend "$KERAS_BACKEND"

budget=(--set search.init_points=10 --set search.n_iter=20)
[ $dry = 1 ] && budget=(--set search.init_points=2 --set search.n_iter=1 --set evaluation.epochs=3)
gpus=(--gpus all)
[ $dry = 1 ] && ! command -v nvidia-smi >/dev/null && gpus=(--workers 1)  # a CPU dry run
for k in 1 2 4; do
    step "course search, 30 trials, ${gpus[*]} --trials-per-gpu $k" 120 "$out/search-k$k.json" \
        "${tuner[@]}" search configs/course-log.yaml --set "data.path=$data" \
        --set evaluation.max_params=1000000 "${budget[@]}" --out "/tmp/gpu-k$k" \
        "${gpus[@]}" --trials-per-gpu "$k" --json --quiet
    "${tuner[@]}" trials --storage "sqlite:////tmp/gpu-k$k/study.db" --study course-log \
        --json >"$out/trials-k$k.json" 2>>"$log"
done
python3 benchmarks/gpu_summary.py "$out" >>"$log" 2>&1

if [ $dry = 1 ]; then
    echo "== out of memory: skipped in a dry run (it would exhaust this machine's memory)" >>"$log"
    echo "done; results in $log"
    exit 0
fi
# Networks of 10 to 200 thousand neurons in one layer: most cannot be allocated on any card.
step "out of memory: trials recorded oom, the search goes on" 90 - \
    "${tuner[@]}" search configs/course-log.yaml --set "data.path=$data" \
    --set network.max_neurons=2000000 --set network.max_layers=2 \
    --set space.neuron_pct="{low: 0.005, high: 0.1}" --set space.neuron_shrink=1.0 \
    --set evaluation.max_params=1000000000000 --set evaluation.epochs=2 \
    --set search.init_points=4 --set search.n_iter=0 --set search.final_candidates=0 \
    --set search.max_consecutive_failures=10 --out /tmp/gpu-oom --gpus all --quiet
"${tuner[@]}" trials --storage sqlite:////tmp/gpu-oom/study.db --study course-log --json \
    >"$out/oom-trials.json" 2>>"$log"
python3 benchmarks/gpu_summary.py "$out" --oom "$out/oom-trials.json" >>"$log" 2>&1
echo "done; results in $log"
