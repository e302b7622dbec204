package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

func job(ns, name string, phase v1alpha1.JobPhase) *v1alpha1.Job {
	return &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name)},
		Status: v1alpha1.JobStatus{Phase: phase}}
}

func TestRunningJobsCountsTheCacheAndReservations(t *testing.T) {
	informer := cache.NewSharedIndexInformer(&cache.ListWatch{}, &v1alpha1.Job{}, 0, cache.Indexers{})
	if err := AddJobIndexers(informer); err != nil {
		t.Fatal(err)
	}
	store := informer.GetIndexer()
	for _, j := range []*v1alpha1.Job{job("dc-west", "a", v1alpha1.JobRunning), job("dc-west", "b", v1alpha1.JobSucceeded),
		job("dc-west", "c", v1alpha1.JobPending), job("dc-west", "d", v1alpha1.JobPending), job("dc-east", "e", v1alpha1.JobRunning)} {
		if err := store.Add(j); err != nil {
			t.Fatal(err)
		}
	}
	r := NewRunningJobs(informer)
	if n := r.Count("dc-west"); n != 1 {
		t.Fatalf("dc-west runs %d, want 1", n)
	}
	c, d := job("dc-west", "c", v1alpha1.JobPending), job("dc-west", "d", v1alpha1.JobPending)
	if !r.Reserve(c, 2) {
		t.Fatal("a free slot was refused")
	}
	if !r.Reserve(c, 2) {
		t.Error("a Job holding a slot was refused its own slot")
	}
	if r.Reserve(d, 2) {
		t.Error("d took a slot beyond the maximum of 2 while c's start is not yet in the cache")
	}
	if n := r.Count("dc-west"); n != 2 {
		t.Errorf("with c reserved dc-west runs %d, want 2", n)
	}
	// The cache catches up: c is Running; the reservation is not counted twice.
	if err := store.Update(job("dc-west", "c", v1alpha1.JobRunning)); err != nil {
		t.Fatal(err)
	}
	if n := r.Count("dc-west"); n != 2 {
		t.Errorf("after c shows Running dc-west runs %d, want 2", n)
	}
	// c finishes: its slot is free for d.
	if err := store.Update(job("dc-west", "c", v1alpha1.JobSucceeded)); err != nil {
		t.Fatal(err)
	}
	if !r.Reserve(d, 2) {
		t.Error("d was refused the slot c freed")
	}
	r.Release(d)
	if n := r.Count("dc-west"); n != 1 {
		t.Errorf("after releasing d dc-west runs %d, want 1", n)
	}
	if n := r.Count("dc-east"); n != 1 {
		t.Errorf("dc-east runs %d, want 1 (namespaces counted apart)", n)
	}
}

func TestJobsByDCJobIDAndRunning(t *testing.T) {
	informer := cache.NewSharedIndexInformer(&cache.ListWatch{}, &v1alpha1.Job{}, 0, cache.Indexers{})
	if err := AddJobIndexers(informer); err != nil {
		t.Fatal(err)
	}
	store := informer.GetIndexer()
	west, east, pending := job("dc-west", "a", v1alpha1.JobRunning), job("dc-east", "b", v1alpha1.JobRunning), job("dc-west", "c", v1alpha1.JobPending)
	west.Status.DCJobID, east.Status.DCJobID = "job-1", "job-1" // one ID in two datacenters
	for _, j := range []*v1alpha1.Job{west, east, pending} {
		if err := store.Add(j); err != nil {
			t.Fatal(err)
		}
	}
	r := NewRunningJobs(informer)
	if got := r.ByDCJobID("dc-west", "job-1"); len(got) != 1 || got[0].Name != "a" {
		t.Errorf("dc-west job-1: %v, want Job a", got)
	}
	if got := r.ByDCJobID("dc-west", "job-2"); len(got) != 0 {
		t.Errorf("dc-west job-2: %v, want none", got)
	}
	if got := r.Running("dc-west"); len(got) != 1 || got[0].Name != "a" || r.CountRunning("dc-west") != 1 {
		t.Errorf("dc-west running: %v (count %d), want Job a", got, r.CountRunning("dc-west"))
	}
	done := west.DeepCopy()
	done.Status.Phase = v1alpha1.JobSucceeded
	if err := store.Update(done); err != nil {
		t.Fatal(err)
	}
	if r.CountRunning("dc-west") != 0 || len(r.ByDCJobID("dc-west", "job-1")) != 1 {
		t.Errorf("after a finishes: %d running, %d by ID", r.CountRunning("dc-west"), len(r.ByDCJobID("dc-west", "job-1")))
	}
}
