"""Kafka -> Apache Beam -> Doris/StarRocks Stream Load."""

import setuptools

REQUIRED = [
    'apache-beam>=2.77,<3',
    'confluent-kafka>=2.16,<3',
    'requests>=2.32,<3',
    'urllib3>=2.2,<3',
    'tenacity>=8.2,<10',
    'orjson>=3.10,<4',
    'PyYAML>=6,<7',
    'prometheus-client>=0.20,<1',
    'sqlglot>=30,<31',
]

YAML = ['apache-beam[yaml]>=2.77,<3']  # Beam YAML: jinja2, jsonschema, docstring-parser, pandas

TEST = [
    'pytest>=8,<10',
    'pytest-timeout>=2.3,<3',
    'trustme>=1.1,<2',
    'wheel>=0.42,<1',  # the packaging test builds a wheel offline
] + YAML

setuptools.setup(
    name='kafka-beam-stream-load',
    version='0.1.0',
    description='Load Kafka into Apache Doris and StarRocks with Apache Beam and Stream Load',
    python_requires='>=3.10',
    packages=setuptools.find_packages(include=['transforms', 'transforms.*', 'pipelines', 'pipelines.*',
                                               'stream_load_emulator', 'stream_load_emulator.*']),
    package_data={'pipelines': ['*.yaml', 'samples/*'], 'stream_load_emulator': ['*.sql']},
    install_requires=REQUIRED,
    extras_require={'test': TEST, 'yaml': YAML},
)
