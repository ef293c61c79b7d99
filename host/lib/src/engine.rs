//! The engine: wasmtime set up for untrusted guests (limits, an optional
//! pool of instance slots, epochs), the storage component compiled or
//! loaded from the compile cache and linked with the ports and WASI, and a
//! new store and instance for a user when no kept one is at hand.

use crate::bindings::{self, StorageService, StorageServicePre};
use crate::builder::{ChatStoreBuilder, Clock, STORAGE_COMPONENT};
use crate::compiled::{self, ComponentSource};
use crate::error::SetupError;
use crate::state::InstanceState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};
use uuid::Uuid;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostWallClock, WasiCtxBuilder};

/// How often the engine's epoch advances; a call's deadline is counted in these.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Core instances one component instance may create: the guest has a few
/// (its module plus the shims the component linker adds); a hostile one gets no more.
const MAX_CORE_INSTANCES: usize = 16;

/// Linear memories one component instance may have (the guest's own; a
/// hostile one gets no more), whether instances are pooled or not.
const MAX_MEMORIES: usize = 2;

/// Tables one component instance may have, and elements in each.
const MAX_TABLES: usize = 4;
const MAX_TABLE_ELEMENTS: usize = 20_000;

/// Bytes of each pooled instance's memory and tables kept mapped between
/// calls (zeroed, not unmapped): the pages a call touches anyway.
const KEEP_RESIDENT: usize = 128 << 10;

/// The most bytes the host lifts out of the guest in one crossing (a port
/// call's arguments or an export's results): strings and lists past it
/// trap the call instead of growing the host's memory.
const MAX_LIFTED_BYTES: usize = 16 << 20;

/// How much of a trapped guest's standard error is kept for the error message.
const GUEST_STDERR_BYTES: usize = 4096;

/// The compiled, linked component and what every instance of it gets.
pub(crate) struct Runtime {
    engine: Engine,
    pre: StorageServicePre<InstanceState>,
    clock: Clock,
    max_guest_memory: usize,
    /// The longest one call may run guest code.
    pub(crate) call_timeout: Duration,
    /// Whether the component was compiled at start or loaded from the cache.
    pub(crate) source: ComponentSource,
    _ticker: EpochTicker,
}

/// A new instance: its store, what its guest prints on stderr, and the
/// instance itself unless instantiating it failed.
pub(crate) struct NewInstance {
    pub(crate) store: Store<InstanceState>,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) service: wasmtime::Result<StorageService>,
}

impl Runtime {
    /// Compiles (or loads) and links the component `builder` names.
    pub(crate) fn new(builder: &ChatStoreBuilder) -> Result<Runtime, SetupError> {
        let component_error = |e: wasmtime::Error| SetupError::Component(one_line(&e));
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        if let Some(instances) = builder.pooled_instances {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_component_instances(instances)
                .total_core_instances(instances.saturating_mul(MAX_CORE_INSTANCES as u32))
                .max_core_instances_per_component(MAX_CORE_INSTANCES as u32)
                .total_memories(instances.saturating_mul(MAX_MEMORIES as u32))
                .total_tables(instances.saturating_mul(MAX_TABLES as u32))
                .max_memories_per_component(MAX_MEMORIES as u32)
                .max_tables_per_component(MAX_TABLES as u32)
                .table_elements(MAX_TABLE_ELEMENTS)
                .max_memory_size(builder.max_guest_memory)
                // What a call touches stays mapped and is zeroed for the
                // next instance, instead of being faulted in again.
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(component_error)?;
        let bytes = builder.component.as_deref().unwrap_or(STORAGE_COMPONENT);
        let (component, source) = compiled::load(&engine, bytes, builder.compile_cache.as_deref())
            .map_err(component_error)?;
        let mut linker = Linker::new(&engine);
        bindings::add_to_linker(&mut linker).map_err(component_error)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(component_error)?;
        let pre = StorageServicePre::new(pre).map_err(|e| {
            SetupError::Component(format!(
                "it does not export `chatstore:storage/storage@0.5.0` as the storage-service world \
                 requires ({})",
                one_line(&e)
            ))
        })?;
        Ok(Runtime {
            _ticker: EpochTicker::start(&engine),
            engine,
            pre,
            clock: builder.clock.clone(),
            max_guest_memory: builder.max_guest_memory,
            call_timeout: builder.call_timeout,
            source,
        })
    }

    /// A new store for `caller`'s calls and an instance in it: WASI with
    /// the store's clock and a captured stderr, the guest limits, the
    /// hostcall bound and the guest-time deadline.
    pub(crate) fn instantiate(&self, caller: Uuid) -> NewInstance {
        let stderr = MemoryOutputPipe::new(GUEST_STDERR_BYTES);
        let wasi = WasiCtxBuilder::new()
            .wall_clock(WallClock(self.clock.clone()))
            .stderr(stderr.clone())
            .build();
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.max_guest_memory)
            .instances(MAX_CORE_INSTANCES)
            .memories(MAX_MEMORIES)
            .tables(MAX_TABLES)
            .table_elements(MAX_TABLE_ELEMENTS)
            .build();
        let mut store = Store::new(&self.engine, InstanceState::new(wasi, limits, caller));
        store.limiter(|state| &mut state.limits);
        store.set_hostcall_fuel(MAX_LIFTED_BYTES);
        // When the epoch reaches the deadline, the call's limit is checked:
        // a deadline counts guest time, so the time spent in ports since the
        // call began is given back.
        store.epoch_deadline_callback(|store| {
            Ok(match store.data().time_left() {
                Some(left) => UpdateDeadline::Continue(ticks(left)),
                None => UpdateDeadline::Interrupt,
            })
        });
        // Instantiating runs guest code too, before any call has begun: it
        // gets one call's time.
        store.set_epoch_deadline(ticks(self.call_timeout));
        let service = self.pre.instantiate(&mut store);
        NewInstance {
            store,
            stderr,
            service,
        }
    }

    /// Instantiates the component again in a store whose instance could not
    /// be made (the pool's slots were full).
    pub(crate) fn instantiate_again(
        &self,
        store: &mut Store<InstanceState>,
    ) -> wasmtime::Result<StorageService> {
        self.pre.instantiate(store)
    }
}

/// wasmtime's message on one line, whatever it looks like.
fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The epoch ticks that cover `time` (at least one).
pub(crate) fn ticks(time: Duration) -> u64 {
    u64::try_from(time.as_nanos().div_ceil(EPOCH_TICK.as_nanos()))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Whether the guest was interrupted at its call's limit.
pub(crate) fn ran_out_of_time(trap: &wasmtime::Error) -> bool {
    trap.downcast_ref() == Some(&wasmtime::Trap::Interrupt)
}

/// The guest's view of a [`Clock`]: WASI's wall clock.
struct WallClock(Clock);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        // WASI's wall clock cannot go before the epoch.
        self.0.now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }
}

/// Advances an engine's epoch every [`EPOCH_TICK`] until dropped, so that
/// guest code past its deadline is interrupted.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, stopped) = (engine.weak(), stop.clone());
        std::thread::Builder::new()
            .name("chatstore-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .ok();
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
