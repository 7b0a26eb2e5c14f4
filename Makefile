# One-command environment: every target builds or refreshes .venv first (a no-op when nothing changed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_ROS := $(PY) -m charm_ros.env --

.PHONY: venv test demo demo5 clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py setup.cfg package.xml pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: venv
	$(RUN_ROS) $(PY) -m pytest $(PYTEST_ARGS)

# The node on the synthetic sensor rig with the shipped checkpoint; sensors drop out and come back.
# The demo report ends the run; DEMO_TIMEOUT (s) is the safety net, to raise for a longer duration:=.
DEMO_TIMEOUT ?= 150
# The default backend (auto: ONNX Runtime on CPU) loads its graphs from a cache: they are built once, here,
# with a progress bar (about 2 minutes on 2 cores the first time, a second after), not during the drive.
DEMO_CHECKPOINT ?= models/charm_tiny_synthetic.safetensors
demo: venv
	$(VENV)/bin/charm-export --checkpoint $(DEMO_CHECKPOINT) --prepare auto
	$(RUN_ROS) $(VENV)/bin/charm-launch launch/sim_demo.launch.yaml --timeout $(DEMO_TIMEOUT) checkpoint:=$(DEMO_CHECKPOINT) $(DEMO_ARGS)

# The same with a thermal camera and the five-modality checkpoint (rgb, depth, event, lidar, thermal):
# 31 graphs to build the first time (about 4 minutes on 2 cores); the rig then renders the drive before
# it starts (about 35 s), so that the node, not the rig's rendering, sets the rate.
DEMO5_CHECKPOINT ?= models/charm_tiny_thermal_synthetic.safetensors
demo5: venv
	$(VENV)/bin/charm-export --checkpoint $(DEMO5_CHECKPOINT) --prepare auto
	$(RUN_ROS) $(VENV)/bin/charm-launch launch/sim_demo5.launch.yaml --timeout $(DEMO_TIMEOUT) checkpoint:=$(DEMO5_CHECKPOINT) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
