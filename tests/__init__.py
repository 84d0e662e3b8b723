"""The test suite is one package: ``tests/yaml`` is ``tests.yaml`` and never shadows
PyYAML's ``yaml`` (without this file pytest put ``tests/`` on ``sys.path``, and
``import yaml`` in a test under ``tests/yaml`` found the test package)."""
