# The two commands a newcomer needs; each creates .venv on first use.
#   make demo   - the whole pipeline on the built-in synthetic poster set (./workspace)
#   make test   - the full test suite (what CI runs)
.PHONY: demo demo-tiny test test-fast bench venv clean

venv:
	@bash scripts/bootstrap.sh

demo: venv
	.venv/bin/neuroposter demo

demo-tiny: venv
	.venv/bin/neuroposter demo --size tiny

test: venv
	.venv/bin/python -m pytest

test-fast: venv
	.venv/bin/python -m pytest -m "not slow"

bench: venv
	.venv/bin/python benchmarks/features_throughput.py --n 96 --repeats 3
	.venv/bin/python benchmarks/train_throughput.py
	.venv/bin/python benchmarks/simulator_vs_norse.py
	.venv/bin/python benchmarks/lava_vs_reference.py
	.venv/bin/python benchmarks/peers.py

clean:
	rm -rf workspace .pytest_cache
