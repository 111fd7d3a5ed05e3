"""Configuration: frozen pydantic models composed under :class:`RaydeskConfig`, loaded from YAML.

Every component is built from its own ``<Thing>Config`` alone. Unknown keys are errors. A bad
config is reported as ``field.path must be RULE, was VALUE`` before anything starts.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from actors.core.instruments import Instrument

#: The ensemble's model families (``serve.ensemble.FAMILY_INPUTS`` says what each reads).
MODEL_FAMILIES: tuple[str, ...] = ("lgbm", "xgboost", "gru", "deeplob", "transformer")

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "local.yaml"


class Strict(BaseModel):
    """Base: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class InstrumentConfig(Strict):
    symbol: str = Field(min_length=1, pattern=r"^[A-Z0-9._-]+$", description="Venue symbol.")
    tick_size: Decimal = Field(gt=0, description="Smallest price increment.")
    lot_size: Decimal = Field(gt=0, description="Smallest quantity increment.")
    venue: str = Field("SIM", description="Venue name.")
    initial_price: Decimal = Field(gt=0, description="Simulator's starting mid price.")

    @model_validator(mode="after")
    def _price_on_tick(self) -> InstrumentConfig:
        if self.initial_price % self.tick_size != 0:
            raise ValueError(
                f"initial_price must be a multiple of tick_size {self.tick_size}, "
                f"was {str(self.initial_price)!r}"
            )
        return self

    def to_instrument(self) -> Instrument:
        return Instrument(self.symbol, self.tick_size, self.lot_size, self.venue)


class SimulatorConfig(Strict):
    """Order-flow model of the market simulator (rates are per symbol)."""

    seed: int = Field(7, ge=0, description="Seed; the same seed gives the same market.")
    levels: int = Field(30, ge=5, le=500, description="Levels per side the model tracks.")
    limit_rate_per_s: float = Field(
        15.0,
        gt=0,
        description="Limit-order arrival rate at distance 1 tick from the opposite best, per side.",
    )
    limit_rate_decay: float = Field(
        0.6, gt=0, description="Power-law exponent: rate at distance d ticks = rate / d^decay."
    )
    cancel_rate_per_s: float = Field(
        2.0, ge=0, description="Cancel rate per resting unit order, per second."
    )
    market_rate_per_s: float = Field(
        12.0, ge=0, description="Market-order arrival rate per side."
    )
    order_size_lots: int = Field(
        5, ge=1, description="Mean size of one order (limit, market, cancel chunk), in lots."
    )
    initial_depth_lots: int = Field(10, ge=1, description="Mean resting size per level at start.")
    feed_latency_us: float = Field(
        250.0, ge=0, description="Simulated exchange-to-us latency (ts_init - ts_event)."
    )


class FeedConfig(Strict):
    source: Literal["sim", "ws"] = Field(
        "sim", description="Market-data source: the built-in simulator, or a live Binance-"
        "compatible WebSocket feed at `url` (symbols: the configured instruments)."
    )
    batch_interval_ms: float = Field(
        100.0, gt=0, le=10_000, description="Micro-batch interval: one batch per symbol per step "
        "(ws: the longest a step waits for data)."
    )
    url: str | None = Field(
        None, pattern=r"^wss?://[^/\s]+/?$",
        description="ws: server base URL, ws://HOST:PORT (the client opens /stream?streams=...).",
    )
    rest_url: str | None = Field(
        None, pattern=r"^https?://[^/\s]+/?$",
        description="ws: base URL of the REST depth snapshot (default: derived from url).",
    )
    market: Literal["usdm", "spot"] = Field(
        "usdm", description="ws: Binance market: USD-M futures (pu chain) or spot (U == u+1)."
    )
    max_batch_delay_ms: float = Field(
        1.0, ge=0, le=1000, description="ws: longest a received row waits for more rows."
    )
    queue_rows: int = Field(
        1_000_000, ge=1000, description="ws: undrained rows per symbol before the oldest are "
        "dropped (counted) and the symbol resynced."
    )
    reconnect_initial_s: float = Field(0.1, gt=0, description="ws: first reconnect backoff cap.")
    reconnect_max_s: float = Field(5.0, gt=0, description="ws: largest reconnect backoff.")
    reconnect_multiplier: float = Field(
        2.0, ge=1, description="ws: backoff growth per failed attempt (full jitter)."
    )
    stall_timeout_s: float = Field(
        10.0, gt=0, description="ws: silence on an open connection that counts as dead."
    )
    snapshot_limit: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="ws: levels per side asked of the REST snapshot (Binance: up to 1000 "
        "futures / 5000 spot; raydesk's feed server serves any depth).",
    )

    @model_validator(mode="after")
    def _ws_needs_url(self) -> FeedConfig:
        if self.source == "ws" and not self.url:
            raise ValueError(f"url must be set when source is 'ws', was {self.url!r}")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError(
                f"reconnect_max_s must be >= reconnect_initial_s {self.reconnect_initial_s}, "
                f"was {self.reconnect_max_s}"
            )
        if self.queue_rows < 4 * self.snapshot_limit:
            # a snapshot is up to 2 x snapshot_limit rows and must fit beside live diffs
            raise ValueError(
                f"queue_rows must be >= 4 x snapshot_limit ({4 * self.snapshot_limit}), "
                f"was {self.queue_rows}"
            )
        return self


class BookConfig(Strict):
    levels_out: int = Field(
        10, ge=1, le=100, description="Levels per side in the book view sent downstream."
    )
    window_ticks: int = Field(
        65_536,
        ge=64,
        le=1 << 22,
        description="Width in ticks of the book's dense price window around the mid (levels "
        "outside it live in a sorted overflow). Memory per symbol is 16 bytes per tick.",
    )


class FeaturesConfig(Strict):
    """Switches and parameters of the feature library (definitions: ``actors.book.features``).

    Every switch defaults to on: the defaults give the full library.
    """

    imbalance_levels: int = Field(
        5, ge=1, le=10, description="Middle depth of depth imbalance (besides 1 and 10 levels)."
    )
    window: int = Field(16, ge=2, le=512, description="Feature vectors in a sequence window.")
    book_window: int = Field(
        32,
        ge=2,
        le=512,
        description="Book states (10 levels a side) in the raw-book window the deeplob and "
        "transformer models read (actors.book.book_window).",
    )
    spread: bool = Field(True, description="spread_bps: best ask - best bid, bps of mid.")
    returns: bool = Field(
        True, description="ret_1_bps, ret_5_bps: log mid returns over 1 and 5 decision points."
    )
    realized_vol: bool = Field(
        True, description="rv_bps: root mean square of the last rv_window 1-step mid returns."
    )
    rv_window: int = Field(16, ge=2, le=4096, description="Decision points in rv_bps.")
    weighted_mid: bool = Field(
        True, description="microprice_dev_bps: size-weighted mid minus mid, bps."
    )
    stoikov: bool = Field(
        True, description="stoikov_micro_bps: Stoikov (2018) micro-price minus mid, bps."
    )
    stoikov_imbalance_buckets: int = Field(
        10, ge=2, le=50, description="Equal-width buckets of the touch imbalance Qb/(Qb+Qa)."
    )
    stoikov_spread_states: int = Field(
        2, ge=1, le=20, description="Spread states 1..n ticks (wider spreads are not modelled)."
    )
    stoikov_history: int = Field(
        20_000, ge=100, le=1_000_000, description="Rolling history of message transitions."
    )
    stoikov_refit_every: int = Field(
        1_000, ge=10, le=1_000_000, description="Refit the adjustment g(I, S) every N messages."
    )
    stoikov_iterations: int = Field(
        6, ge=0, le=200, description="Terms B^k G1 (k = 1..n) added to G1 in g = sum B^k G1."
    )
    vamp: bool = Field(
        True, description="vamp_dev_bps: volume-adjusted mid over vamp_levels minus mid, bps."
    )
    vamp_levels: int = Field(5, ge=1, le=10, description="Levels per side in vamp_dev_bps.")
    depth_imbalance: bool = Field(
        True, description="imbalance_lN: (bid - ask depth) / total over 1, imbalance_levels, 10."
    )
    ofi: bool = Field(
        True, description="ofi_norm: Cont-Kukanov-Stoikov best-level OFI / mean touch depth."
    )
    mlofi: bool = Field(
        True, description="mlofi_norm: weighted multi-level OFI (Xu-Huang-Wang) / mean depth."
    )
    mlofi_levels: int = Field(10, ge=1, le=10, description="Levels M of mlofi_norm.")
    mlofi_weights: tuple[float, ...] | None = Field(
        None,
        description="Weights of levels 1..M in mlofi_norm (length mlofi_levels); None = 1/M "
        "each (an equal-weight sum, close to the first principal component).",
    )
    trade_flow: bool = Field(
        True, description="trade_imbalance: (buy - sell aggressor volume) / total, per interval."
    )
    vpin: bool = Field(True, description="vpin: VPIN over volume buckets, bulk classification.")
    vpin_bar_ms: float = Field(
        1_000.0, gt=0, le=3_600_000, description="Time bar of bulk volume classification."
    )
    vpin_bucket_volume: float = Field(
        0.0,
        ge=0,
        description="Volume per VPIN bucket, instrument units; 0 = the total size of the first "
        "vpin_auto_trades trades.",
    )
    vpin_auto_trades: int = Field(
        200, ge=1, le=1_000_000, description="Trades that fix the automatic bucket volume."
    )
    vpin_buckets: int = Field(50, ge=1, le=10_000, description="Buckets averaged in vpin.")
    vpin_sigma_bars: int = Field(
        50, ge=2, le=10_000, description="Bars in the standard deviation of bar price changes."
    )
    volume_profile: bool = Field(
        True, description="poc/vah/val_dist_bps: volume profile of the last profile_trades trades."
    )
    profile_trades: int = Field(
        2_000, ge=10, le=1_000_000, description="Trades in the rolling volume profile."
    )
    profile_bin_bps: float = Field(
        1.0, gt=0, le=1_000, description="Profile price bin, bps of the first trade's price."
    )
    profile_value_area: float = Field(
        0.7, gt=0, le=1, description="Share of profile volume inside the value area."
    )
    walls: bool = Field(
        True, description="wall_*: nearest liquidity wall per side, arrivals and withdrawals."
    )
    wall_k: float = Field(
        5.0, gt=1, le=1_000, description="A wall holds >= k x the median top-10 level size."
    )
    icebergs: bool = Field(
        True, description="hidden_vol_frac, refill_count, l3_iceberg_refills per interval."
    )
    refill_ms: float = Field(
        500.0, gt=0, le=3_600_000, description="A traded-down level restored within this counts."
    )
    refill_frac: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Traded down: executed >= frac x displayed; restored: shows >= frac x it.",
    )
    absorption: bool = Field(
        True, description="absorption: +1 bid absorbs selling, -1 ask absorbs buying."
    )
    absorption_k: float = Field(
        1.0, gt=0, le=1_000, description="Aggressive volume >= k x touch size at interval start."
    )
    exhaustion: bool = Field(
        True, description="exhaustion: +1 selling exhausts, -1 buying exhausts, price stalled."
    )
    exhaustion_intervals: int = Field(
        3, ge=2, le=64, description="Consecutive intervals of strictly declining volume."
    )
    exhaustion_stall_bps: float = Field(
        1.0, ge=0, le=10_000, description="Stalled: abs(mid log return) over them, bps, <= this."
    )
    log_events: bool = Field(True, description="log_events: log1p(book messages in interval).")

    @model_validator(mode="after")
    def _consistent(self) -> FeaturesConfig:
        w = self.mlofi_weights
        if w is not None and len(w) != self.mlofi_levels:
            raise ValueError(
                f"mlofi_weights must have mlofi_levels={self.mlofi_levels} entries, was {list(w)!r}"
            )
        switches = [k for k, f in type(self).model_fields.items() if f.annotation is bool]
        if not any(getattr(self, k) for k in switches):
            raise ValueError(f"at least one of {switches} must be true, was all false")
        return self


class ModelsConfig(Strict):
    """The ensemble: what to train at first start and how Serve hosts it."""

    registry_path: str = Field("artifacts/models", description="Model registry root.")
    horizon: int = Field(10, ge=1, description="Label horizon in decision points.")
    flat_threshold_bps: float = Field(
        0.0,
        ge=0,
        description="|mid return| over the horizon at or below this is the 'flat' class "
        "(0 = flat only when the mid is unchanged; simulated moves are a few ticks).",
    )
    train_seconds: float = Field(
        1_800.0, gt=0, description="Simulated seconds of market used to train at first start."
    )
    train_seed: int = Field(1234, ge=0, description="Seed of the training market and models.")
    families: list[str] = Field(
        default_factory=lambda: ["lgbm", "xgboost", "gru", "deeplob", "transformer"],
        min_length=1,
        description="Model families trained and served, one Serve deployment each: lgbm and "
        "xgboost on the feature vector, gru on the feature window, deeplob and transformer on "
        "the raw book window (features.book_window).",
    )
    colocate: list[str] = Field(
        default_factory=list,
        description="Families run inside the ingress replica instead of a Serve deployment of "
        "their own: no handle hop for them, the same loading, hot swap, shadow and batching "
        "(docs/benchmarks.md measures the difference).",
    )
    lgbm_trees: int = Field(120, ge=1, le=5_000, description="LightGBM boosting rounds.")
    xgb_trees: int = Field(120, ge=1, le=5_000, description="XGBoost boosting rounds.")
    torch_hidden: int = Field(32, ge=4, le=1024, description="GRU hidden size.")
    torch_epochs: int = Field(
        4, ge=1, le=200, description="Training epochs of the torch families."
    )
    lob_width: int = Field(
        16,
        ge=4,
        le=256,
        description="Width of the raw-book networks: deeplob conv channels (inception and "
        "LSTM twice this) and the transformer's d_model (2 layers, 4 heads).",
    )
    weights: dict[str, float] | None = Field(
        None,
        description="Ensemble weights per family (0 = deployed but not called). None: the "
        "weights fitted on validation data at training (the registry's ENSEMBLE.json), equal "
        "weights when none were fitted.",
    )
    versions: dict[str, str] = Field(
        default_factory=dict,
        description="Family -> registry version to serve, pinned (a missing family serves the "
        "registry's production version). A sweep's best config pins the versions it was "
        "scored with, so re-running it reproduces its metrics after a later promotion.",
    )
    deadline_ms: float = Field(
        250.0, gt=0, description="A prediction later than this is replaced by the fallback."
    )
    max_batch_size: int = Field(16, ge=1, description="@serve.batch max batch size.")
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        description="@serve.batch wait for a fuller batch. 0: run at once (requests that queue "
        "while a batch runs are still batched); the kernel already sends one request per step.",
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs per model replica (0 on CPU nodes).")
    num_cpus: float = Field(0.0, ge=0, description="CPUs reserved per replica.")
    http_port: int = Field(8000, ge=0, le=65535, description="Serve HTTP port.")
    registry_poll_s: float = Field(
        2.0,
        ge=0,
        description="Model replicas that serve production (no pinned version) check the "
        "registry's production and shadow pointers this often and hot-swap on a change, s "
        "(0 = never; then only reconfigure changes the served version).",
    )
    shadow_log_dir: str | None = Field(
        "artifacts/shadow",
        description="Where the ingress appends shadow-vs-champion predictions as JSON lines "
        "(shadow-<pid>.jsonl); None = do not log (shadow outputs are still returned).",
    )

    @field_validator("families")
    @classmethod
    def _families(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(MODEL_FAMILIES))
        if unknown:
            raise ValueError(f"families must be in {list(MODEL_FAMILIES)}, was {unknown!r}")
        if len(set(v)) != len(v):
            raise ValueError(f"families must not repeat, was {v!r}")
        return v

    @model_validator(mode="after")
    def _weights(self) -> ModelsConfig:
        outside = sorted(set(self.colocate) - set(self.families))
        if outside:
            raise ValueError(f"colocate must name families in {self.families}, was {outside!r}")
        pinned = sorted(set(self.versions) - set(self.families))
        if pinned:
            raise ValueError(
                f"versions keys must be in models.families {self.families}, was {pinned!r}"
            )
        v = self.weights
        if v is None:
            return self
        unknown = sorted(set(v) - set(self.families))
        if unknown:
            raise ValueError(
                f"weights keys must be in models.families {self.families}, was {unknown!r}"
            )
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, was {v!r}")
        return self


def _check_range(name: str, v: tuple[float, float]) -> tuple[float, float]:
    if v[0] > v[1]:
        raise ValueError(f"{name} must be (low, high) with low <= high, was {v!r}")
    return v


class RetrainConfig(Strict):
    """The retrain job (``python -m jobs.retrain``): Ray Tune search, ASHA, drift thresholds.

    Ranges are ``(low, high)``, both included; learning rates are searched log-uniformly.
    """

    families: list[str] | None = Field(
        None,
        description="Families to retrain (each must be in models.families); None = "
        "models.families.",
    )
    samples: int = Field(4, ge=1, le=1_000, description="Tune trials per family.")
    seed: int = Field(0, ge=0, description="Seed of the hyperparameter sampling.")
    max_concurrent_trials: int = Field(
        0, ge=0, description="Trials run at once per family (0 = as many as free CPUs allow)."
    )
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs reserved per trial.")
    boost_rounds: tuple[int, int] = Field(
        (40, 160), description="lgbm / xgboost: boosting rounds (trees) a trial may grow."
    )
    rounds_per_report: int = Field(
        20, ge=1, description="lgbm / xgboost: rounds between two reports (and checkpoints)."
    )
    boost_learning_rate: tuple[float, float] = Field(
        (0.01, 0.2), description="lgbm / xgboost: learning rate (eta) range."
    )
    lgbm_leaves: tuple[int, int] = Field((4, 31), description="lgbm: num_leaves range.")
    xgb_depth: tuple[int, int] = Field(
        (2, 8), description="xgboost: max_depth range (at most 2**depth leaves)."
    )
    torch_epochs: tuple[int, int] = Field(
        (2, 4), description="gru / deeplob / transformer: epochs range (one report per epoch)."
    )
    torch_lr: tuple[float, float] = Field(
        (3e-4, 1e-2), description="gru / deeplob / transformer: Adam learning rate range."
    )
    gru_hidden: list[int] = Field(
        default_factory=lambda: [16, 32], min_length=1, description="gru: hidden sizes to try."
    )
    lob_width: list[int] = Field(
        default_factory=lambda: [8, 16],
        min_length=1,
        description="deeplob / transformer: widths to try (models.lob_width's meaning).",
    )
    grace_period: int = Field(
        1,
        ge=1,
        description="ASHA: reports a trial makes before it can be stopped (capped at the "
        "family's most reports).",
    )
    reduction_factor: float = Field(
        2.0, gt=1, description="ASHA: 1/reduction_factor of the trials go on at each rung."
    )
    min_improvement: float = Field(
        0.002,
        ge=0,
        allow_inf_nan=False,
        description="Promotion margin: a challenger is promoted only when its holdout log loss "
        "is below the champion's minus this (0 = any strict improvement).",
    )
    drift_bins: int = Field(
        10, ge=2, le=100, description="Quantile bins per feature of the stored drift reference."
    )
    psi_threshold: float = Field(
        0.25, gt=0, description="--if-drift: a feature with PSI above this has shifted."
    )
    log_loss_increase: float = Field(
        0.05,
        gt=0,
        description="--if-drift: live log loss (latest window) this far above the holdout's "
        "is decay.",
    )
    accuracy_drop: float = Field(
        0.05,
        gt=0,
        description="--if-drift: live accuracy (latest window) this far below the holdout's "
        "is decay.",
    )
    drift_window: int = Field(
        500, ge=1, description="--if-drift: decisions per rolling accuracy window."
    )
    drift_min_samples: int = Field(
        200,
        ge=1,
        description="--if-drift: fewer labelled decisions or feature rows skip that check.",
    )

    @field_validator("families")
    @classmethod
    def _families(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        unknown = sorted(set(v) - set(MODEL_FAMILIES))
        if unknown or not v or len(set(v)) != len(v):
            raise ValueError(
                f"families must be distinct names in {list(MODEL_FAMILIES)}, was {v!r}"
            )
        return v

    @field_validator("boost_rounds", "lgbm_leaves", "xgb_depth", "torch_epochs")
    @classmethod
    def _int_range(cls, v: tuple[int, int], info: Any) -> tuple[int, int]:
        low = 2 if info.field_name == "lgbm_leaves" else 1
        if v[0] < low:
            raise ValueError(f"{info.field_name} must start at >= {low}, was {v!r}")
        return _check_range(info.field_name, v)

    @field_validator("boost_learning_rate", "torch_lr")
    @classmethod
    def _rate_range(cls, v: tuple[float, float], info: Any) -> tuple[float, float]:
        if v[0] <= 0:
            raise ValueError(f"{info.field_name} must be > 0, was {v!r}")
        return _check_range(info.field_name, v)

    @field_validator("gru_hidden", "lob_width")
    @classmethod
    def _sizes(cls, v: list[int], info: Any) -> list[int]:
        if any(x < 4 or x > 1024 for x in v):
            raise ValueError(f"{info.field_name} must be sizes in 4..1024, was {v!r}")
        return v


class StrategyConfig(Strict):
    entry_edge: float = Field(
        0.10, ge=0, le=1, description="Trade when |p_up - p_down| exceeds this."
    )
    order_qty_lots: int = Field(10, ge=1, description="Quantity of one order, in lots.")
    hold_steps: int = Field(
        0,
        ge=0,
        description="Holding horizon: a position whose symbol has had no signal for this many "
        "decisions is steered back to flat, one order_qty_lots order per decision (0 = hold "
        "until the opposite signal). Decisions come every feed.batch_interval_ms; "
        "models.horizon is the label horizon in the same units.",
    )
    target_position_lots: int = Field(
        30, ge=1, description="Position the strategy steers towards on a signal."
    )
    order_type: Literal["market", "limit_ioc"] = Field(
        "limit_ioc", description="How the strategy crosses the spread."
    )
    limit_offset_ticks: int = Field(
        1, ge=0, description="For limit_ioc: ticks through the touch the limit price sits."
    )
    sizing: Literal["fixed", "vol_target", "kelly", "risk_parity"] = Field(
        "fixed",
        description="Position sizing (actors/strategy/sizer.py): fixed = target_position_lots; "
        "the others size from the sampled return covariance against risk.capital, capped at "
        "target_position_lots, and do not trade before sizing_min_returns returns.",
    )
    target_vol_daily: float = Field(
        0.02, gt=0, description="vol_target / risk_parity: daily volatility of the sized "
        "exposure (of the whole book for risk_parity), as a fraction of capital."
    )
    kelly_fraction: float = Field(0.5, gt=0, le=1, description="kelly: fraction of full Kelly.")
    kelly_cap: float = Field(1.0, gt=0, description="kelly: largest leverage per symbol.")
    sizing_horizon_s: float = Field(
        60.0, gt=0, description="kelly: horizon of the signal's edge, seconds."
    )
    sizing_sample_ms: float = Field(1_000.0, gt=0, description="Return sampling grid, ms.")
    sizing_window: int = Field(600, ge=10, description="Returns kept for the covariance.")
    sizing_min_returns: int = Field(30, ge=2, description="Returns needed before sizing.")


class SymbolRiskLimits(Strict):
    """Per-symbol overrides of :class:`RiskConfig`'s per-order and per-symbol limits."""

    max_position_lots: int | None = Field(None, ge=0, description="|position| cap, lots.")
    max_notional_per_order: float | None = Field(None, gt=0, description="Per-order notional.")
    min_notional: float | None = Field(None, ge=0, description="Smallest order notional.")
    min_qty_lots: int | None = Field(None, ge=1, description="Smallest order, lots.")
    max_qty_lots: int | None = Field(None, ge=1, description="Largest order, lots.")
    max_orders_per_s: float | None = Field(None, gt=0, description="Order token-bucket rate.")
    order_burst: int | None = Field(None, ge=1, description="Order token-bucket capacity.")
    max_open_orders: int | None = Field(None, ge=1, description="Working orders on the symbol.")
    price_band_bps: float | None = Field(None, gt=0, description="Limit price band, bps.")


class VarLimitConfig(Strict):
    """The pre-trade VaR / ES limit on the post-trade portfolio (``actors/risk/monitor.py``)."""

    alpha: float = Field(0.99, gt=0.5, lt=1, description="Confidence level of the limits.")
    horizon_s: float = Field(60.0, gt=0, description="Horizon of the limits, seconds.")
    method: Literal["normal", "historical"] = Field(
        "normal",
        description="normal: delta-normal from the sample covariance (O(1) per check); "
        "historical: the post-trade P&L of every sampled joint return (O(window) per check). "
        "Both scale one-sample returns to the horizon by sqrt(time).",
    )
    var_limit: float | None = Field(
        None, gt=0, description="Deny an order whose post-trade VaR exceeds this (quote "
        "currency) unless it lowers VaR. None = off."
    )
    es_limit: float | None = Field(
        None, gt=0, description="Same for Expected Shortfall. None = off."
    )
    sample_ms: float = Field(
        1_000.0, gt=0, description="Mid prices are sampled on this grid to build returns."
    )
    window: int = Field(600, ge=10, description="Returns kept (the estimation window).")
    min_returns: int = Field(
        30, ge=2, description="Below this many returns the VaR limit is not enforced yet "
        "(counted as raydesk_risk_var_warmup)."
    )

    @model_validator(mode="after")
    def _window(self) -> VarLimitConfig:
        if self.min_returns > self.window:
            raise ValueError(
                f"risk.var.min_returns must be <= window {self.window}, was {self.min_returns}"
            )
        return self


class RiskReportConfig(Strict):
    """The periodic portfolio-risk report (VaR / ES by every method, stress, heat, correlation)."""

    every_s: float = Field(
        10.0, gt=0, description="Report period on the risk actor's clock. Metrics and summary."
    )
    alphas: tuple[float, ...] = Field((0.95, 0.99), min_length=1, description="Confidences.")
    horizons_s: tuple[float, ...] = Field(
        (1.0, 10.0), min_length=1,
        description="Horizons, s. The VaR part waits for max(horizon) / var.sample_ms + 1 "
        "sampled returns (and var.min_returns).",
    )
    mc_paths: int = Field(10_000, ge=100, description="Monte Carlo scenarios.")
    mc_dof: float | None = Field(
        5.0, gt=2, description="Student-t degrees of freedom of the Monte Carlo (None = normal)."
    )
    correlation_alert: float = Field(
        0.8, gt=0, le=1, description="Pairs with |rolling correlation| at or above this alert."
    )
    scenarios: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {
            "all_down_10pct": {"*": -0.10},
            "all_up_10pct": {"*": 0.10},
            "all_down_25pct": {"*": -0.25},
        },
        description="Hypothetical stress scenarios: name -> {symbol or '*': simple return}. "
        "Historical scenarios (the worst observed joint moves) are added to these.",
    )

    @field_validator("alphas")
    @classmethod
    def _alphas(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for a in v:
            if not 0.5 < a < 1:
                raise ValueError(f"risk.report.alphas must be in (0.5, 1), was {a}")
        return v

    @field_validator("horizons_s")
    @classmethod
    def _horizons(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for h in v:
            if not h > 0:
                raise ValueError(f"risk.report.horizons_s must be > 0, was {h}")
        return v


class RiskConfig(Strict):
    # --- per order ---
    max_notional_per_order: float = Field(
        50_000.0, gt=0, description="Price × quantity of one order, quote currency."
    )
    min_notional: float = Field(0.0, ge=0, description="Smallest order notional, quote currency.")
    min_qty_lots: int = Field(1, ge=1, description="Smallest order quantity, lots.")
    max_qty_lots: int = Field(1_000_000, ge=1, description="Largest order quantity, lots.")
    price_band_bps: float = Field(
        200.0, gt=0, description="Fat-finger band: a limit price further than this from the "
        "reference price (microprice, or mid when one side is empty) is denied."
    )
    # --- per symbol ---
    max_position_lots: int = Field(
        100, ge=0, description="Worst-case |position + working same-side + order| per symbol."
    )
    max_open_orders_per_symbol: int = Field(20, ge=1, description="Working orders per symbol.")
    max_orders_per_s: float = Field(
        20.0, gt=0, description="Token-bucket refill rate, orders per second, per symbol."
    )
    order_burst: int = Field(10, ge=1, description="Token-bucket capacity per symbol.")
    symbols: dict[str, SymbolRiskLimits] = Field(
        default_factory=dict, description="Per-symbol overrides of the limits above."
    )
    quarantined_symbols: tuple[str, ...] = Field(
        (), description="Symbols on which new orders are denied (operator quarantine)."
    )
    # --- portfolio ---
    capital: float = Field(
        100_000.0, gt=0, description="Account equity at start, quote currency: the base of "
        "concentration and heat (equity = capital + PnL)."
    )
    max_gross_exposure: float = Field(
        250_000.0, gt=0, description="Σ worst-case |exposure| over symbols, quote currency."
    )
    max_net_exposure: float = Field(
        150_000.0, gt=0, description="Worst-case |Σ signed exposure|, quote currency."
    )
    max_concentration: float = Field(
        1.0, gt=0, description="Worst-case |exposure| of one symbol / equity."
    )
    max_open_orders: int = Field(100, ge=1, description="Working orders over all symbols.")
    max_orders_per_s_global: float = Field(
        100.0, gt=0, description="Token-bucket rate over all symbols, orders per second."
    )
    order_burst_global: int = Field(50, ge=1, description="Global order token-bucket capacity.")
    max_messages_per_s: float = Field(
        200.0, gt=0, description="Message budget (submits + cancels), per second. Cancels are "
        "never denied but spend it; a submit finding it empty is denied."
    )
    message_burst: int = Field(100, ge=1, description="Message token-bucket capacity.")
    self_trade_prevention: bool = Field(
        True, description="Deny an order that could trade against one of our own working "
        "orders on the same symbol."
    )
    var: VarLimitConfig = VarLimitConfig()
    report: RiskReportConfig = RiskReportConfig()
    # --- freshness ---
    max_book_age_ms: float = Field(
        5_000.0, gt=0, description="Orders on a book older than this are denied."
    )
    max_feature_age_ms: float = Field(
        5_000.0, gt=0, description="Orders from features older than this are denied "
        "(SubmitOrder.features_ts_ns; 0 = not model-driven, not checked)."
    )
    max_signal_age_ms: float = Field(
        2_000.0, gt=0, description="Orders from a model output older than this are denied "
        "(SubmitOrder.signal_ts_ns; 0 = not model-driven, not checked)."
    )
    # --- kill switches ---
    daily_loss_limit: float = Field(
        5_000.0, gt=0, description="Loss (realised - fees + unrealised) since 00:00 UTC (or "
        "the last re-arm) that trips the kill switch."
    )
    max_drawdown: float | None = Field(
        None, gt=0, description="Fall of equity from its high-water mark (since start or the "
        "last re-arm) that trips the kill switch, quote currency. None = off."
    )
    flatten_on_halt: bool = Field(
        False, description="On a trip, also close every position with reduce-only market orders."
    )
    rearm_token_env: str = Field(
        "RAYDESK_REARM_TOKEN", pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable of the risk actor holding the re-arm secret. Re-arm "
        "is refused (and counted) without the right token, or when the variable is unset.",
    )

    @model_validator(mode="after")
    def _ranges(self) -> RiskConfig:
        if self.min_qty_lots > self.max_qty_lots:
            raise ValueError(
                f"risk.min_qty_lots must be <= max_qty_lots {self.max_qty_lots}, "
                f"was {self.min_qty_lots}"
            )
        if self.min_notional > self.max_notional_per_order:
            raise ValueError(
                f"risk.min_notional must be <= max_notional_per_order "
                f"{self.max_notional_per_order}, was {self.min_notional}"
            )
        return self


class ExecutionConfig(Strict):
    maker_fee_bps: float = Field(1.0, description="Maker fee, bps of notional (negative=rebate).")
    taker_fee_bps: float = Field(4.0, description="Taker fee, bps of notional.")
    order_latency_us: float = Field(
        300.0, ge=0, description="Simulated order-entry latency on simulated time."
    )
    latency_samples_us: list[float] | None = Field(
        None,
        min_length=1,
        description="Measured order-entry latencies, us: when set, each submit, cancel and "
        "amend draws one of them (seeded by latency_seed, so replay is deterministic) instead "
        "of order_latency_us.",
    )
    latency_seed: int = Field(0, ge=0, description="Seed of the latency draws.")
    closed_orders_kept: int = Field(
        10_000, ge=0, description="Closed orders the execution engine keeps (late events for "
        "them are still judged, their client order ids still refused as duplicates); older "
        "ones are forgotten, so memory and checkpoints stay bounded.",
    )
    queue_model: Literal["conservative", "probabilistic"] = Field(
        "conservative",
        description="Paper venue queue position: conservative = cancels at our price are "
        "assumed behind us; probabilistic = a share of them is assumed ahead of us, "
        "f(ahead) / (f(ahead) + f(behind)) with f(x) = x ** queue_prob_power (hftbacktest's "
        "power-law ProbQueueModel).",
    )
    queue_prob_power: float = Field(
        2.0, gt=0, description="Exponent of the probabilistic queue model."
    )

    @field_validator("latency_samples_us")
    @classmethod
    def _latency_samples(cls, v: list[float] | None) -> list[float] | None:
        bad = [x for x in v or [] if not x >= 0]
        if bad:
            raise ValueError(f"latency_samples_us must be >= 0 each, was {bad!r}")
        return v


class JournalConfig(Strict):
    fsync: bool = Field(True, description="fsync after every appended batch of records.")
    postgres: bool = Field(
        False, description="Mirror the journal to PostgreSQL (table raydesk_audit) through "
        "asyncpg, at RAYDESK_PG_DSN (default postgresql://postgres@127.0.0.1:5432/test). "
        "An outage is caught up from the journal: nothing lost, nothing duplicated."
    )
    redis: bool = Field(
        False, description="Publish the latest signals, positions, top of book and fills to "
        "Redis at RAYDESK_REDIS_URL (default redis://127.0.0.1:6379/0); when Redis is down "
        "trading goes on, degraded and counted."
    )
    signal_ttl_s: float = Field(5.0, gt=0, description="TTL of the signals written to Redis.")
    pg_drain_timeout_s: float = Field(
        30.0, gt=0, description="At the end of a run, how long to wait for Postgres to take "
        "the rest of the journal (it stays in the journal for the next sink otherwise)."
    )


class RayConfig(Strict):
    address: str | None = Field(
        None, description="Existing cluster to join; RAY_ADDRESS overrides; None = local."
    )
    namespace: str = Field("raydesk", pattern=r"^[a-z0-9_-]+$", description="Ray namespace.")
    include_dashboard: bool = Field(True, description="Start the dashboard on local Ray.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for local Ray (None = all).")
    actor_num_cpus: float = Field(0.0, ge=0, description="CPUs reserved per pipeline actor.")
    serve_throughput_optimized: bool = Field(
        True,
        description="When raydesk starts Ray itself (raydesk run, python -m jobs.run), run Serve "
        "in its throughput-optimised mode (RAY_SERVE_THROUGHPUT_OPTIMIZED=1: gRPC between "
        "replicas, router on the caller's loop; cluster/serve_mode.py). On an existing cluster "
        "set that variable on every node and the driver instead. An explicit value in the "
        "environment always wins.",
    )
    start_timeout_s: float = Field(
        120.0, gt=0, description="How long the topology's actors may take to start."
    )
    max_restarts: int = Field(
        0,
        ge=0,
        description="Restarts of a crashed RiskActor or ExecutionActor (> 0 turns on their "
        "per-step checkpoints under runs/<id>/checkpoints/ and Ray's retry of their calls; a "
        "restarted one continues from its checkpoint and answers a retried call with the "
        "checkpointed result). The other actors are never restarted: they would come back "
        "empty.",
    )


class RunConfig(Strict):
    duration_s: float = Field(60.0, gt=0, description="How long to run (simulated s on replay).")
    events: int | None = Field(None, ge=1, description="Stop after this many market events.")
    replay: bool = Field(False, description="Simulated time, as fast as possible.")
    runs_dir: str = Field("runs", description="Where runs/<run_id>/ are written.")
    progress: bool = Field(True, description="Show live progress.")


SWEEP_SECTIONS = ("strategy", "risk", "execution")


def _default_sweep_space() -> dict[str, list[Any]]:
    return {
        "strategy.entry_edge": [0.02, 0.05, 0.10, 0.20],
        "strategy.hold_steps": [0, 10, 50],
        "strategy.target_position_lots": [10, 30],
        "risk.max_position_lots": [20, 100],
    }


class SweepConfig(Strict):
    """``jobs.sweep``: strategy parameters searched over walk-forward folds (docs/research.md)."""

    space: dict[str, list[Any]] = Field(
        default_factory=_default_sweep_space,
        description="Grid of candidate values: dotted config path (strategy.*, risk.*, "
        "execution.*) -> values. Every combination is a candidate.",
    )
    samples: int | None = Field(
        None, ge=1, description="Draw this many candidates from the grid (seeded); None = all."
    )
    seed: int = Field(0, ge=0, description="Seed of the candidate draw.")
    duration_s: float = Field(
        300.0, gt=0, description="Simulated seconds every trial replays (the whole span)."
    )
    warmup_s: float = Field(
        10.0, ge=0, description="Span start scored by no fold (books, features, sizers warm up)."
    )
    folds: int = Field(3, ge=1, le=50, description="Walk-forward folds (test blocks).")
    scheme: Literal["anchored", "rolling"] = Field(
        "anchored",
        description="anchored: each fold trains on everything before its test block; rolling: "
        "on the one block before it.",
    )
    purge_s: float | None = Field(
        None,
        ge=0,
        description="Train steps this close before a test block are dropped (None = the label "
        "horizon: models.horizon decisions).",
    )
    embargo_s: float = Field(
        5.0, ge=0, description="Train steps this close after an earlier test block are dropped."
    )
    objective: Literal["sharpe", "sortino", "total_return", "calmar"] = Field(
        "sharpe", description="What candidates are ranked by (higher is better)."
    )
    top_k: int = Field(
        3,
        ge=1,
        description="Per fold, the coarse mode's best this many (by the fold's train score) "
        "go on to a full replay, plus the best this many over the whole span.",
    )
    coarse: bool = Field(
        True,
        description="Rank every candidate with the fast coarse mode first (False: fully replay "
        "every candidate).",
    )
    max_concurrent: int | None = Field(
        None, ge=1, description="Full-replay trials at once (None = one per CPU of the cluster)."
    )

    @field_validator("space")
    @classmethod
    def _space(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not v:
            raise ValueError("space must name at least one parameter, was empty")
        for key, values in v.items():
            if key.split(".", 1)[0] not in SWEEP_SECTIONS or "." not in key:
                raise ValueError(
                    f"space keys must be dotted paths in {list(SWEEP_SECTIONS)}, was {key!r}"
                )
            if not isinstance(values, list) or not values:
                raise ValueError(f"space.{key} must be a non-empty list, was {values!r}")
            seen = [json.dumps(x, sort_keys=True) for x in values]
            if len(set(seen)) != len(seen):
                raise ValueError(f"space.{key} must not repeat a value, was {values!r}")
        return v


class RaydeskConfig(Strict):
    """The root: everything one run needs.

    Example:
        >>> cfg = load_config("configs/local.yaml")
        >>> cfg.risk.max_position_lots
        100
    """

    run: RunConfig = RunConfig()
    ray: RayConfig = RayConfig()
    instruments: tuple[InstrumentConfig, ...] = Field(min_length=1)
    simulator: SimulatorConfig = SimulatorConfig()
    feed: FeedConfig = FeedConfig()
    book: BookConfig = BookConfig()
    features: FeaturesConfig = FeaturesConfig()
    models: ModelsConfig = ModelsConfig()
    retrain: RetrainConfig = RetrainConfig()
    sweep: SweepConfig = SweepConfig()
    strategy: StrategyConfig = StrategyConfig()
    risk: RiskConfig = RiskConfig()
    execution: ExecutionConfig = ExecutionConfig()
    journal: JournalConfig = JournalConfig()

    @model_validator(mode="after")
    def _unique_symbols(self) -> RaydeskConfig:
        seen: set[str] = set()
        for ins in self.instruments:
            if ins.symbol in seen:
                raise ValueError(f"instruments symbols must be unique, was {ins.symbol!r} twice")
            seen.add(ins.symbol)
        for where, names in (
            ("risk.symbols", sorted(self.risk.symbols)),
            ("risk.quarantined_symbols", list(self.risk.quarantined_symbols)),
        ):
            for name in names:
                if name not in seen:
                    raise ValueError(
                        f"{where} must name configured instruments {sorted(seen)}, was {name!r}"
                    )
        return self

    def instrument_map(self) -> dict[str, Instrument]:
        return {i.symbol: i.to_instrument() for i in self.instruments}

    def initial_prices_ticks(self) -> dict[str, int]:
        """Return the simulator's starting mid per symbol, in integer ticks."""
        return {
            i.symbol: i.to_instrument().price_to_ticks(i.initial_price) for i in self.instruments
        }

    def with_overrides(self, **sections: dict[str, Any]) -> RaydeskConfig:
        """Return a validated copy with some fields of some sections replaced."""
        data = self.model_dump(mode="json")
        for name, values in sections.items():
            data[name] = {**data.get(name, {}), **values}
        return RaydeskConfig.model_validate(data)

    def hash(self) -> str:
        """Return a stable hash of everything that changes decisions (not run bookkeeping)."""
        data = self.model_dump(mode="json", exclude={"run": {"progress", "runs_dir"}})
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


class ConfigError(Exception):
    """A config file could not be read or broke a rule; ``errors`` holds one line per problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"invalid config {source}:\n" + "\n".join(f"  {e}" for e in errors))


def _format_error(err: dict[str, Any]) -> str:
    path = ".".join(str(p) for p in err["loc"]) or "<root>"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        return f"{path} must be a known field (unknown key), was {value!r}"
    if err["type"] == "missing":
        return f"{path} must be present (field required)"
    if " was " in msg:
        return f"{path}: {msg}"
    shown = value if not isinstance(value, dict | list) else type(value).__name__
    if msg.startswith("Input should be "):
        return f"{path} must be {msg[len('Input should be '):]}, was {shown!r}"
    if msg.startswith("String should "):
        return f"{path} must {msg[len('String should '):]}, was {shown!r}"
    return f"{path} must satisfy: {msg}, was {shown!r}"


def parse_config(data: Any, source: str = "<dict>") -> RaydeskConfig:
    """Validate ``data`` into a :class:`RaydeskConfig` or raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(source, [f"<root> must be a mapping, was {type(data).__name__}"])
    try:
        return RaydeskConfig.model_validate(data)
    except ValidationError as exc:
        errs = exc.errors()
        # a container reported "too short" only because its items failed: keep the item errors
        prefixes = {tuple(e["loc"][:i]) for e in errs for i in range(1, len(e["loc"]))}
        lines = [
            _format_error(e)
            for e in errs
            if not (e["type"] == "too_short" and tuple(e["loc"]) in prefixes)
        ]
        raise ConfigError(source, lines) from None


def load_config(path: str | Path | None = None) -> RaydeskConfig:
    """Load and validate a YAML config (``configs/local.yaml`` when ``path`` is None)."""
    p = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(str(p), [f"file must be readable, was {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), [f"file must be valid YAML: {exc}"]) from None
    return parse_config(data, str(p))


def config_markdown() -> str:
    """Render every config section and field as Markdown (the source of docs/configuration.md)."""
    import typing

    out = [
        "# Configuration",
        "",
        "One YAML file validated into frozen pydantic models under `RaydeskConfig`",
        "(`cluster/config.py`). Unknown keys are errors; `raydesk config validate PATH` checks a",
        "file and `raydesk config schema` prints the JSON schema. `configs/local.yaml` is the",
        "embedded default (local Ray, simulator, local journal, no external services).",
        "",
        "Generated by `raydesk config docs > docs/configuration.md`; a test keeps it current.",
        "",
    ]
    for name, field in RaydeskConfig.model_fields.items():
        model = field.annotation
        if typing.get_origin(model) is tuple:
            model = typing.get_args(model)[0]
        out += [f"## `{name}`", "", "| field | default | meaning |", "|---|---|---|"]
        for fname, f in model.model_fields.items():
            d = "(required)" if f.is_required() else f.get_default(call_default_factory=True)
            out.append(f"| `{fname}` | `{d}` | {f.description or ''} |")
        out.append("")
    return "\n".join(out)
