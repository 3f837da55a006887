"""Stream Load into Doris and StarRocks: the client (usable without Beam) and the sink.

One job per module: ``config`` (settings, validated once), ``errors`` (the
taxonomy, by whose fault), ``classify`` (server messages -> errors),
``transport`` (pooled HTTP, FE rotation, FE -> BE redirect), ``transactions``
(labels, 2PC, StarRocks's transaction API), ``client`` (``StreamLoadClient``),
``bodies`` (request bodies), ``labels``, ``loader`` (one batch, bisecting
bad data), ``scheduler`` (per-key ordering), ``sink`` (``WriteToStreamLoad``),
``probe`` (``FeProbe``, a readiness check).
"""

from transforms.stream_load.client import StreamLoadClient
from transforms.stream_load.config import StreamLoadConfig, TableLoadOptions
from transforms.stream_load.errors import (AuthenticationError, ClusterFaultError,
                                           DataQualityError, RetriesExhaustedError,
                                           RetryableLoadError, RowFaultError, StreamLoadError,
                                           StreamLoadUnavailableError, TableNotFoundError)
from transforms.stream_load.outcome import LoadOutcome
from transforms.stream_load.probe import FeProbe
from transforms.stream_load.sink import SinkSettings, StreamLoadWriteResult, WriteToStreamLoad

__all__ = [
    'AuthenticationError',
    'ClusterFaultError',
    'DataQualityError',
    'FeProbe',
    'LoadOutcome',
    'RetriesExhaustedError',
    'RetryableLoadError',
    'RowFaultError',
    'StreamLoadClient',
    'StreamLoadConfig',
    'StreamLoadError',
    'StreamLoadUnavailableError',
    'StreamLoadWriteResult',
    'TableLoadOptions',
    'TableNotFoundError',
    'WriteToStreamLoad',
    'SinkSettings',
]
