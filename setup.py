"""ament_python package `charm_ros`: installs the `charm_core` (ROS-free) and `charm_ros` packages."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "charm_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="CHARM modality-agnostic semantic segmentation for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["charm_core", "charm_core.*", "charm_ros", "charm_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.*")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
        (f"share/{PACKAGE}/models", glob("models/*.safetensors")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    entry_points={
        # One rule: charm-<tool>. The underscore names of the first release stay as aliases.
        "console_scripts": [
            "charm-launch = charm_ros.tools.launcher:main",
            "charm-node = charm_ros.node.charm_node:main",
            "charm-sim-rig = charm_ros.tools.sim_rig:main",
            "charm-demo-report = charm_ros.tools.demo_report:main",
            "charm-synth = charm_core.data.synth_cli:main",
            "charm-train = charm_core.train.cli:train_main",
            "charm-eval = charm_core.train.cli:eval_main",
            "charm-bag-record = charm_ros.tools.bag_record:main",
            "charm-bag-eval = charm_ros.tools.bag_eval:main",
            "charm-bag-play = charm_ros.tools.bag_play:main",
            "charm-bag-export = charm_ros.tools.bag_export:main",
            "charm-foxglove-bridge = charm_ros.tools.foxglove_bridge:main",
            "charm-export = charm_core.export:main",
            "charm_launch = charm_ros.tools.launcher:main",
            "charm_node = charm_ros.node.charm_node:main",
            "charm_sim_rig = charm_ros.tools.sim_rig:main",
            "charm_demo_report = charm_ros.tools.demo_report:main",
        ],
    },
)
