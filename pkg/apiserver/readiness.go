package apiserver

import (
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"

	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/client-go/tools/cache"
)

// cachesReady is the /readyz check "stargate-caches": this replica is ready
// once every resource's watch cache is filled and, while it runs the
// controllers, their informers are too. Until then a restarted replica would
// answer lists from a cache still filling (or from etcd, at its cost) and its
// controllers would not act: "ready" means it serves as it will.
type cachesReady struct {
	stores map[string]rest.StorageWithReadiness
	// controllers reports the controllers' caches synced; nil while this
	// replica does not run them (--controllers=false, or not started yet).
	controllers atomic.Pointer[[]cache.InformerSynced]
}

func newCachesReady(storage map[string]rest.Storage) *cachesReady {
	r := &cachesReady{stores: map[string]rest.StorageWithReadiness{}}
	for resource, s := range storage {
		if withReadiness, ok := s.(rest.StorageWithReadiness); ok {
			r.stores[resource] = withReadiness
		}
	}
	return r
}

// Name implements healthz.HealthChecker.
func (r *cachesReady) Name() string { return "stargate-caches" }

// Check implements healthz.HealthChecker.
func (r *cachesReady) Check(*http.Request) error {
	resources := make([]string, 0, len(r.stores))
	for resource := range r.stores {
		resources = append(resources, resource)
	}
	slices.Sort(resources)
	for _, resource := range resources {
		if err := r.stores[resource].ReadinessCheck(); err != nil {
			return fmt.Errorf("the watch cache of %s is not filled yet: %w", resource, err)
		}
	}
	if synced := r.controllers.Load(); synced != nil {
		for _, s := range *synced {
			if !s() {
				return fmt.Errorf("the controllers' caches are not filled yet")
			}
		}
	}
	return nil
}

// running records the controllers' caches while they run; nil once they stop.
func (r *cachesReady) running(synced []cache.InformerSynced) {
	if synced == nil {
		r.controllers.Store(nil)
		return
	}
	r.controllers.Store(&synced)
}
