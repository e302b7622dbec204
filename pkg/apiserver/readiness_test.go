package apiserver

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/client-go/tools/cache"
)

type fakeStore struct {
	rest.Storage
	err error
}

func (f *fakeStore) ReadinessCheck() error { return f.err }

func TestCachesReady(t *testing.T) {
	jobs := &fakeStore{err: errors.New("storage is (re)initializing")}
	r := newCachesReady(map[string]rest.Storage{"jobs": jobs, "plain": restStorage{}})
	if err := r.Check(nil); err == nil || !strings.Contains(err.Error(), "jobs") {
		t.Fatalf("a watch cache filling must fail readiness naming it: %v", err)
	}
	jobs.err = nil
	if err := r.Check(nil); err != nil {
		t.Fatalf("filled watch caches, controllers not running: %v", err)
	}
	synced := false
	r.running([]cache.InformerSynced{func() bool { return true }, func() bool { return synced }})
	if err := r.Check(nil); err == nil {
		t.Fatal("a replica whose controllers' caches are filling must not be ready")
	}
	synced = true
	if err := r.Check(nil); err != nil {
		t.Fatalf("all filled: %v", err)
	}
	synced = false
	r.running(nil)
	if err := r.Check(nil); err != nil {
		t.Fatalf("after the term ended, its caches no longer count: %v", err)
	}
}

type restStorage struct{}

func (restStorage) New() runtime.Object { return nil }
func (restStorage) Destroy()            {}
