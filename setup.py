"""Kafka -> Apache Beam -> Doris/StarRocks Stream Load.

The product is two packages: ``transforms`` (the IO pieces) and ``pipelines``
(the front ends).  ``stream_load_emulator`` (the local Stream Load server) and
``devtools`` (the demo, a local Kafka) are development tools: they are not
installed, and what they need beyond the product is in the ``dev`` extra.
"""

import setuptools

# The SDK version submits the job and runs in every worker (a worker image, Dataflow's or a Flink
# task manager's worker pool, must hold the same version): pinned, and the same in
# templates/dataflow/Dockerfile and the docs (a test checks).
BEAM_VERSION = '2.78.0'

REQUIRED = [
    f'apache-beam=={BEAM_VERSION}',
    'confluent-kafka>=2.16,<3',
    'requests>=2.32,<3',
    'urllib3>=2.2,<3',
    'tenacity>=8.2,<10',
    'orjson>=3.10,<4',
    'PyYAML>=6,<7',
    'prometheus-client>=0.20,<1',
    'PyMySQL>=1.1,<2',  # StarRocks DDL (--create_tables, add_columns) over the FE's MySQL port
]

YAML = [f'apache-beam[yaml]=={BEAM_VERSION}']  # Beam YAML: jinja2, jsonschema, docstring-parser, pandas

# --format=avro|protobuf|json_schema: confluent-kafka's Schema Registry client and deserializers
# (httpx, authlib, cachetools, fastavro, protobuf, googleapis-common-protos, jsonschema).
REGISTRY = ['confluent-kafka[avro,protobuf,schemaregistry,json]>=2.16,<3']

DEV = [
    'sqlglot>=30,<31',  # the local Stream Load server's SQL
    'pyarrow>=14',      # the local server reads Arrow bodies
    'mysql-mimic>=3.0.5,<3.1',  # the local server's MySQL port (it overrides a private method)
] + REGISTRY

TEST = [
    'pytest>=8,<10',
    'pytest-timeout>=2.3,<3',
    'trustme>=1.1,<2',
    'wheel>=0.42,<1',  # the packaging test builds a wheel offline
    'import-linter>=2,<3',  # the layering contract (tests/test_layers.py)
] + YAML + DEV  # DEV brings REGISTRY

setuptools.setup(
    name='kafka-beam-stream-load',
    version='0.2.0',
    description='Load Kafka into Apache Doris and StarRocks with Apache Beam and Stream Load',
    python_requires='>=3.10',
    packages=setuptools.find_packages(include=['transforms', 'transforms.*', 'pipelines',
                                               'pipelines.*']),
    package_data={'pipelines': ['samples/*']},
    install_requires=REQUIRED,
    extras_require={'test': TEST, 'yaml': YAML, 'dev': DEV, 'registry': REGISTRY},
)
