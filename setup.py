"""The MicroPMU Quickstart Server suite: one distribution, several commands.

Console scripts are added here as each command becomes real.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

# One version, in qss/__init__.py: the archive builder (python -m installer build) sets it
# in a copy of the checkout, so the wheel and `qss-get --version` agree.
VERSION = re.search(r'^__version__ = "([^"]+)"$',
                    Path(__file__).with_name("qss").joinpath("__init__.py").read_text(),
                    re.M).group(1)

#: The top-level packages: the shared core, the services, the tools, the demo.
PACKAGES = ["qss", "tsdb", "receiver", "sync2q", "simulator", "dattool", "installer",
            "upmu_adm", "plotter", "distil", "demokit", "plotter_accounts"]

setup(
    name="qss",
    version=VERSION,
    description="MicroPMU Quickstart Server: receiver, sync2q, upmu-adm, qss-get and friends",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # The core and the packages standing on it (docs/architecture.md, "Layout").
    packages=find_packages(include=[f"{top}{sub}" for top in PACKAGES for sub in ("", ".*")]),
    install_requires=[
        "numpy>=1.24,<3",
        "configobj>=5.0.8,<6",
        "tqdm>=4.60,<5",
        # The official BTrDB client: sync2q writes through it, and the embedded server
        # serves its own generated gRPC stubs, so the protocol cannot drift.
        "btrdb>=5.34,<6",
        "grpcio>=1.59,<2",
        "pyarrow>=14,<30",
        # btrdb 5.34 fails to import without pandas (an annotation evaluated at import).
        "pandas>=2,<4",
        "zstandard>=0.22,<1",
        # Compiled kernels of the embedded BTrDB store's insert path (they release the GIL).
        "numba>=0.59,<1",
        "prompt_toolkit>=3.0.36,<4",
        "pymongo>=4.0,<5",
        "psutil>=5.9,<8",
        # Versions and requirements of the offline archives (qss-get -u, python -m installer).
        "packaging>=23,<27",
        # The plotter's web site (qss-plotter): an ASGI app on uvicorn, JSON by orjson
        # (numpy arrays as they are, NaN as null).
        "starlette>=0.37,<1",
        "uvicorn>=0.29,<1",
        "orjson>=3.9,<4",
        # The plotter's accounts: passwords only as Argon2id hashes.
        "argon2-cffi>=21.3,<26",
    ],
    extras_require={
        "test": [
            "pytest>=7.4,<10",
            # ./dev test runs the suite on two workers, a test file each (--dist loadfile).
            "pytest-xdist>=3.8,<4",
            "hypothesis>=6.80,<7",
            "pexpect>=4.8,<5",
            "mongomock>=4.1,<5",
            "requests>=2.28,<3",
            # A real supervisord for the deployment tests (the appliance uses Debian's).
            "supervisor>=4.2,<5",
            # The plotter's page in Debian's headless chromium + chromium-driver.
            "selenium>=4.15,<5",
            # The official client's polars conversions, run by its own integration suite
            # (tests/test_tsdb_client_suite.py fails when a test skips for a missing module).
            "polars>=1.0,<3",
        ],
    },
    # plotter/static is built from plotter/frontend by npm (./dev setup), never committed.
    package_data={"installer": ["templates/*/*"], "plotter": ["static/*"]},
    entry_points={
        "console_scripts": [
            "qss-dat = dattool.cli:entry",
            "upmu-adm = upmu_adm.cli:entry",
            "qss-receiver = receiver.server:entry",
            "qss-btrdb = tsdb.server:entry",
            "qss-sync2q = sync2q.cli:entry",
            "qss-get = installer.cli:entry",
            "clean_synced = installer.clean:entry",
            "qss-sim = simulator.cli:entry",
            "qss-plotter = plotter.server:entry",
            "qss-distil = distil.cli:entry",
            "qss-accounts = plotter_accounts.cli:entry",
            "qss-metadata = plotter.metadata:entry",
        ],
    },
)
