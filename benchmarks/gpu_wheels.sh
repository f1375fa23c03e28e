#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh needs on the GPU machine, which has JAX, PyTorch, NumPy,
# pandas, scikit-learn, click, rich, PyYAML, matplotlib and joblib but not Keras, bayes_opt,
# SQLAlchemy or pydantic. They go to .gpu/wheels (ignored by git; carried with `carry: [.gpu]`).
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]     # 3.12 there by default
set -euo pipefail
version=${1:-3.12}
dest=${GPU_WHEELS:-.gpu/wheels}  # another folder for a dry run on another Python
mkdir -p "$dest"
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# Keras and what it needs beyond the machine's packages; bayes_opt; the study storage; config:
# at the versions CI pins (.ci/constraints.txt), so that the GPU runs what the tests ran.
names=(keras namex optree bayesian-optimization sqlalchemy greenlet pydantic pydantic-core
    annotated-types typing-inspection)
wheels=()
for name in "${names[@]}"; do
    wheels+=("$(grep -i "^${name//-/[-_]}==" .ci/constraints.txt || echo "$name")")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$version" \
    --implementation cp "${platforms[@]}" -d "$dest" "${wheels[@]}"
du -sh "$dest"
ls "$dest"
