"""SQLAlchemy models: kernels, shapes, environments, studies, trials and best configs.

Alembic revisions in `migrations/` must match these; tests/storage/test_migrations.py checks.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["Base", "BestConfig", "Environment", "KernelRow", "ShapeRow", "Study", "Trial", "utcnow"]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class KernelRow(Base):
    __tablename__ = "kernels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ShapeRow(Base):
    """A shape of one kernel; `key` is the canonical JSON of its dims."""

    __tablename__ = "shapes"
    __table_args__ = (UniqueConstraint("kernel_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kernel_id: Mapped[int] = mapped_column(ForeignKey("kernels.id"))
    name: Mapped[str | None] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(500))
    dims: Mapped[dict[str, Any]]

    kernel: Mapped[KernelRow] = relationship()


class Environment(Base):
    """Where trials ran: GPU, driver, CUDA, torch, Triton, kernel source hash."""

    __tablename__ = "environments"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint_hash: Mapped[str] = mapped_column(String(64), unique=True)
    gpu: Mapped[str] = mapped_column(String(200))
    driver: Mapped[str | None] = mapped_column(String(50))
    cuda: Mapped[str | None] = mapped_column(String(50))
    torch: Mapped[str] = mapped_column(String(50))
    triton: Mapped[str] = mapped_column(String(50))
    kernel_source_hash: Mapped[str] = mapped_column(String(64))
    interpreted: Mapped[bool] = mapped_column(Boolean, default=False)
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Study(Base):
    """One search: kernel, shape, strategy with settings and seed, environment, state."""

    __tablename__ = "studies"
    __table_args__ = (Index("ix_studies_lookup", "kernel_id", "shape_id", "strategy", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kernel_id: Mapped[int] = mapped_column(ForeignKey("kernels.id"))
    shape_id: Mapped[int] = mapped_column(ForeignKey("shapes.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    strategy: Mapped[str] = mapped_column(String(50))
    settings: Mapped[dict[str, Any]]
    seed: Mapped[int] = mapped_column(Integer)
    budget: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(20), default="running")
    interpreted: Mapped[bool] = mapped_column(Boolean, default=False)
    replay: Mapped[str | None] = mapped_column(String(500))
    best_trial_id: Mapped[int | None] = mapped_column(Integer)
    shootout: Mapped[list[Any] | None]
    note: Mapped[str | None] = mapped_column(Text)
    # `host:pid` of the process searching it while `running` (evotune/liveness.py).
    runner: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    kernel: Mapped[KernelRow] = relationship()
    shape: Mapped[ShapeRow] = relationship()
    environment: Mapped[Environment] = relationship()


class Trial(Base):
    """One candidate config and what became of it; only `ok` trials carry latencies."""

    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("study_id", "config_hash"),
        Index("ix_trials_study_status", "study_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]]
    config_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    p50_us: Mapped[float | None] = mapped_column(Float)
    p20_us: Mapped[float | None] = mapped_column(Float)
    p80_us: Mapped[float | None] = mapped_column(Float)
    n_runs: Mapped[int] = mapped_column(Integer, default=0)
    samples_us: Mapped[list[Any]]
    max_error: Mapped[float | None] = mapped_column(Float)
    compile_s: Mapped[float | None] = mapped_column(Float)
    run_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    parents: Mapped[list[Any]]
    operator: Mapped[str] = mapped_column(String(50), default="seed")
    seed: Mapped[int] = mapped_column(Integer)
    shootout_p50_us: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    study: Mapped[Study] = relationship()


class BestConfig(Base):
    """The published winner per (kernel, shape, environment)."""

    __tablename__ = "best_configs"
    __table_args__ = (UniqueConstraint("kernel_id", "shape_id", "environment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kernel_id: Mapped[int] = mapped_column(ForeignKey("kernels.id"))
    shape_id: Mapped[int] = mapped_column(ForeignKey("shapes.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environments.id"))
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"))
    config: Mapped[dict[str, Any]]
    p50_us: Mapped[float] = mapped_column(Float)
    shootout_p50_us: Mapped[float | None] = mapped_column(Float)
    tflops: Mapped[float | None] = mapped_column(Float)
    max_error: Mapped[float | None] = mapped_column(Float)
    measured_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    kernel: Mapped[KernelRow] = relationship()
    shape: Mapped[ShapeRow] = relationship()
    environment: Mapped[Environment] = relationship()
