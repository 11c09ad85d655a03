# The two commands of the README; each sets up .venv itself on a fresh machine.
.PHONY: demo test bench train-default
demo:
	bash tools/setup_env.sh && PYTHONPATH=$(CURDIR) .venv/bin/python -m stereonet_ros.tools.demo
test:
	bash tools/run_tests.sh -q
bench:
	bash tools/setup_env.sh && PYTHONPATH=$(CURDIR) .venv/bin/python -m stereonet_ros.tools.bench
train-default:  # reproduce the shipped model (hours on a CPU): stages 1-11, export, measure
	bash tools/train_default.sh
