package joblock

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate"
)

// clusterCtx is the context of a request for a cluster-scoped resource.
func clusterCtx() context.Context {
	return genericapirequest.WithNamespace(context.Background(), metav1.NamespaceNone)
}

func (e *env) createDatacenter(t *testing.T, name string) {
	t.Helper()
	if _, err := e.dcs.Datacenter.Create(clusterCtx(), &stargate.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       stargate.DatacenterSpec{Endpoint: "https://" + name + ".example", MaxConcurrentJobs: ptr.To[int32](10)},
	}, nil, &metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) deleteDatacenter(name string) error {
	_, _, err := e.dcs.Datacenter.Delete(clusterCtx(), name, rest.ValidateAllObjectFunc, &metav1.DeleteOptions{})
	return err
}

// TestDatacenterDeleteProtection: a Datacenter whose namespace still has an
// unfinished Job (Pending or Running) cannot be deleted: 409 naming the Job.
func TestDatacenterDeleteProtection(t *testing.T) {
	e := newEnv(t)
	e.createDatacenter(t, ns)
	e.createDatacenter(t, "dc-east")
	if err := e.create(newJob("pending", "server-001"), nil); err != nil {
		t.Fatal(err)
	}
	if err := e.create(newJob("finished", "server-002"), nil); err != nil {
		t.Fatal(err)
	}
	e.setPhase(t, "finished", stargate.JobSucceeded)

	wantConflictNaming(t, e.deleteDatacenter(ns), "pending")
	e.setPhase(t, "pending", stargate.JobRunning)
	wantConflictNaming(t, e.deleteDatacenter(ns), "pending")
	// Jobs of another namespace do not hold a Datacenter.
	if err := e.deleteDatacenter("dc-east"); err != nil {
		t.Errorf("a Datacenter without Jobs: %v", err)
	}
	_, err := e.dcs.Datacenter.DeleteCollection(clusterCtx(), rest.ValidateAllObjectFunc, &metav1.DeleteOptions{}, nil)
	wantConflictNaming(t, err, "pending")
	if _, err := e.dcs.Datacenter.Get(clusterCtx(), ns, &metav1.GetOptions{}); err != nil {
		t.Fatalf("a refused delete lost the Datacenter: %v", err)
	}
	e.setPhase(t, "pending", stargate.JobFailed)
	if err := e.deleteDatacenter(ns); err != nil {
		t.Errorf("a Datacenter whose Jobs are finished: %v", err)
	}
}

// TestDatacenterEndpointPinnedWhileJobsRun: pointing a Datacenter at another
// endpoint is refused while its Jobs are unfinished (the new endpoint's "not
// found" would be taken for theirs); other changes, and the endpoint once the
// Jobs are done, go through.
func TestDatacenterEndpointPinnedWhileJobsRun(t *testing.T) {
	e := newEnv(t)
	e.createDatacenter(t, ns)
	if err := e.create(newJob("running", "server-001"), nil); err != nil {
		t.Fatal(err)
	}
	e.setPhase(t, "running", stargate.JobRunning)
	update := func(mutate func(*stargate.Datacenter)) error {
		obj, err := e.dcs.Datacenter.Get(clusterCtx(), ns, &metav1.GetOptions{})
		if err != nil {
			return err
		}
		dc := obj.(*stargate.Datacenter).DeepCopy()
		mutate(dc)
		_, _, err = e.dcs.Datacenter.Update(clusterCtx(), ns, rest.DefaultUpdatedObjectInfo(dc),
			rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
		return err
	}
	moved := func(dc *stargate.Datacenter) { dc.Spec.Endpoint = "https://elsewhere.example" }
	wantConflictNaming(t, update(moved), "running")
	if err := update(func(dc *stargate.Datacenter) { dc.Spec.Paused = true }); err != nil {
		t.Errorf("pausing a busy Datacenter: %v", err)
	}
	e.setPhase(t, "running", stargate.JobSucceeded)
	if err := update(moved); err != nil {
		t.Errorf("moving a Datacenter whose Jobs are done: %v", err)
	}
}
