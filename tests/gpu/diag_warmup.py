"""Diagnostic: which worker serves the first trial after a warm-up, and why one was replaced."""

from evotune.worker.pool import WorkerPool
from tests.worker.helpers import FAULT_MODULE, fault_request

if __name__ == "__main__":
    with WorkerPool(FAULT_MODULE, gpus=[0], compile_workers=2) as pool:
        pids = pool.worker_pids
        pool.warm_up(fault_request(-1, "none"))
        print("after warm-up", pids, pool.worker_pids, pool.retirements)
        for i in range(3):
            r = next(iter(pool.evaluate([fault_request(1 + i, "none")])))
            print(i, r.status.value, r.compile_s, pool.worker_pids, pool.retirements)
