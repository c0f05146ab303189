//! Sizing wasmtime's pooling allocator from the configuration.
//!
//! The pooling allocator reserves every slot (instance metadata, linear memories, tables) once at
//! start, so instantiating after a trap or a reload is a slot reuse instead of `mmap`/`munmap`
//! calls, and a process can never hold more instances than its tenants are entitled to.

use anyhow::{bail, Result};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Address space reserved per linear-memory slot. Wasmtime's default reservation for a 32-bit
/// memory is 4 GiB, which lets compiled code skip bounds checks (the hardware faults instead),
/// plus a 32 MiB guard region after it and one before it.
const SLOT_BYTES: u64 = (4 << 30) + 2 * (32 << 20);
/// Linear memories one component instance may hold: the guest's own, plus one for an adapter
/// (Go's WASI preview 1 adapter brings its own).
const MEMORIES_PER_INSTANCE: u32 = 2;
/// Core module instances per component: componentize-py links about a dozen modules.
const CORE_INSTANCES_PER_INSTANCE: u32 = 32;
/// Tables per component instance (one per core module that has one).
const TABLES_PER_INSTANCE: u32 = 32;
/// Elements per table: interpreters (CPython, QuickJS) have tens of thousands of functions.
const TABLE_ELEMENTS: usize = 100_000;
/// Half of x86-64's 128 TiB user address space: the rest stays for the heap, librdkafka, stacks.
const MAX_RESERVED_BYTES: u64 = 64 << 40;

/// How many instances the pool holds and how large their memories may grow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSizing {
    /// Component instances the pool holds at most, over all tenants; at least 1.
    pub instances: u32,
    /// The largest `memory_mib` of any pipeline; each instance's own cap is enforced by its
    /// `ResourceLimiter`.
    pub max_memory_bytes: usize,
}

impl PoolSizing {
    /// Room for what can be in use at once. A tenant's calls hold one of its `max_instances`
    /// call slots, over all its pipelines and plugin versions, so at most that many instances
    /// are busy; each pipeline also needs one for a new version's warm-up and keeps one warm.
    /// So a tenant needs `max_instances + 2 × pipelines` slots. More instances than that are only
    /// ever idle, and an idle one is dropped when a new one needs its slot.
    pub fn for_tenants(
        tenants: impl IntoIterator<Item = (usize, usize)>,
        max_memory_bytes: usize,
    ) -> Self {
        let instances: usize = tenants
            .into_iter()
            .filter(|&(pipelines, _)| pipelines > 0)
            .map(|(pipelines, max_instances)| max_instances + 2 * pipelines)
            .sum();
        PoolSizing {
            instances: instances.clamp(1, u32::MAX as usize / CORE_INSTANCES_PER_INSTANCE as usize)
                as u32,
            max_memory_bytes,
        }
    }

    /// Address space the memory pool reserves (not memory used: untouched pages cost nothing).
    pub(crate) fn reserved_bytes(&self) -> u64 {
        self.instances as u64 * MEMORIES_PER_INSTANCE as u64 * SLOT_BYTES
    }

    /// Switches `config` to the pooling allocator with this sizing.
    pub(crate) fn apply(&self, config: &mut Config) -> Result<()> {
        let reserved = self.reserved_bytes();
        if reserved > MAX_RESERVED_BYTES {
            bail!(
                "the instance pool would reserve {} GiB of address space ({} instances × {} memories × {} MiB), more than the {} GiB allowed; lower the tenants' `limits.max_instances` or set [engine] pooling = false",
                reserved >> 30,
                self.instances,
                MEMORIES_PER_INSTANCE,
                SLOT_BYTES >> 20,
                MAX_RESERVED_BYTES >> 30
            );
        }
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(self.instances)
            .total_core_instances(self.instances * CORE_INSTANCES_PER_INSTANCE)
            .total_memories(self.instances * MEMORIES_PER_INSTANCE)
            .total_tables(self.instances * TABLES_PER_INSTANCE)
            .max_memories_per_component(MEMORIES_PER_INSTANCE)
            .max_core_instances_per_component(CORE_INSTANCES_PER_INSTANCE)
            .max_tables_per_component(TABLES_PER_INSTANCE)
            .table_elements(TABLE_ELEMENTS)
            .max_memory_size(self.max_memory_bytes)
            .max_component_instance_size(4 << 20)
            .max_core_instance_size(4 << 20)
            // Every call runs on a fiber; a store keeps its fiber stack between calls.
            .total_stacks(self.instances)
            // A reused slot is zeroed lazily by the kernel (madvise), not by a memset.
            .linear_memory_keep_resident(0);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizing_follows_tenants_and_refuses_too_much_address_space() {
        let sizing = PoolSizing::for_tenants([(2, 16), (1, 4), (0, 64)], 64 << 20);
        assert_eq!(sizing.instances, (16 + 2 * 2) + (4 + 2));
        assert_eq!(sizing.reserved_bytes(), 26 * 2 * SLOT_BYTES);
        let mut config = Config::new();
        assert!(sizing.apply(&mut config).is_ok());
        // 200 pipelines of one tenant with the default limits fit.
        let many = PoolSizing::for_tenants([(200, 64)], 64 << 20);
        assert_eq!(many.instances, 464);
        assert!(many.apply(&mut Config::new()).is_ok());
        let huge = PoolSizing::for_tenants((0..200).map(|_| (1, 64)), 64 << 20);
        let err = huge.apply(&mut Config::new()).unwrap_err().to_string();
        assert!(err.contains("13200 instances"), "{err}");
        assert!(err.contains("max_instances"), "{err}");
    }
}
