"""Engine tuning from the environment (`VDR_EXPORT_*`), for operators and benchmarks."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jobs import defaults


class EngineConfig(BaseSettings):
    """Limits of one export process; each field is `VDR_EXPORT_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="VDR_EXPORT_", extra="ignore")

    concurrency: int = Field(default=defaults.CONCURRENCY, ge=1)
    max_concurrency: int = Field(default=defaults.MAX_CONCURRENCY, ge=1)
    min_concurrency: int = Field(default=defaults.MIN_CONCURRENCY, ge=1)
    list_concurrency: int = Field(default=defaults.LIST_CONCURRENCY, ge=1)
    part_size: int = Field(default=defaults.PART_SIZE, ge=5 * defaults.MiB)
    multipart_threshold: int = Field(default=defaults.MULTIPART_THRESHOLD, ge=5 * defaults.MiB)
    part_uploads_per_file: int = Field(default=defaults.PART_UPLOADS_PER_FILE, ge=1)
    memory_budget: int = Field(default=defaults.MEMORY_BUDGET, ge=16 * defaults.MiB)
    shard_max_files: int = Field(default=defaults.SHARD_MAX_FILES, ge=1)
    shard_max_bytes: int = Field(default=defaults.SHARD_MAX_BYTES, ge=1)
    file_attempts: int = Field(default=defaults.FILE_ATTEMPTS, ge=1)
    source_attempts: int = Field(default=defaults.SOURCE_ATTEMPTS, ge=1)
    lease_s: float = Field(default=defaults.LEASE_S, gt=0)
    reap_interval_s: float = Field(default=defaults.REAP_INTERVAL_S, gt=0)
    progress_interval_s: float = Field(default=defaults.PROGRESS_INTERVAL_S, ge=0)
    sync_each_file: bool = Field(
        default=False, description="fsync every file before its rename, instead of syncing "
        "the file system once per shard (slower; same guarantee at the manifest).",
    )
    direct_s3_puts: bool = Field(
        default=True, description="send PUTs of objects and parts as botocore-signed requests "
        "without the boto3 client's per-call work; false: every request through boto3.",
    )
