"""The C extensions only (everything else is in pyproject.toml): oceand._fastroute, the ingest routing loop's
usual sample in C (oceand/_fastroute.c says what it does and leaves to Python), and policies._faststep, a
closed bucket's step for the usual job (policies/_faststep.c). Optional: without a C compiler the install
succeeds and oceand routes every item and steps every bucket in Python, with the same results."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("oceand._fastroute", ["oceand/_fastroute.c"], optional=True, extra_compile_args=["-O2"]),
        Extension("policies._faststep", ["policies/_faststep.c"], optional=True, extra_compile_args=["-O2"]),
    ]
)
