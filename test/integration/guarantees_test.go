package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/cmd/server"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	"stargate.io/stargate/pkg/registry/stargate/registrytest"
)

func seedInventory(t *testing.T, c clientset.Interface) {
	t.Helper()
	ctx := context.Background()
	if _, err := c.StargateV1alpha1().Hardwares(ns).Create(ctx, hardware("server-001", "aa:bb:cc:dd:ee:01", "10.0.1.5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StargateV1alpha1().Templates(ns).Create(ctx, &v1alpha1.Template{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2-0-0", Namespace: ns},
		Spec:       v1alpha1.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/os.img"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func repaveJob(name string) *v1alpha1.Job {
	return &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: "server-001"}, Operation: v1alpha1.OperationRepave,
			TemplateRef: &v1alpha1.LocalObjectReference{Name: "os-2-0-0"}},
	}
}

// race runs n requests at once and checks all but the winners lost with 409 Conflict.
func race(t *testing.T, n int, do func(i int) error) (won int) {
	t.Helper()
	won, conflicts := registrytest.Race(t, n, apierrors.IsConflict, do)
	if won+len(conflicts) != n {
		t.Errorf("%d successes and %d conflicts of %d", won, len(conflicts), n)
	}
	return won
}

// TestOneJobPerHardwareThroughBothDoors: 50 concurrent /repave requests, then
// 50 concurrent Job creates, for one Hardware: one success each round, 49 409s,
// and the lock is released when the Job finishes or is deleted.
func TestOneJobPerHardwareThroughBothDoors(t *testing.T) {
	ts := startServer(t, "")
	seedInventory(t, ts.Client)
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	req := &v1alpha1.RepaveRequest{Spec: v1alpha1.RepaveRequestSpec{TemplateRef: v1alpha1.LocalObjectReference{Name: "os-2-0-0"}}}

	if won := race(t, 50, func(int) error {
		_, err := c.Hardwares(ns).Repave(ctx, "server-001", req.DeepCopy(), metav1.CreateOptions{}) // a copy each: encoding sets its kind
		return err
	}); won != 1 {
		t.Fatalf("/repave: %d of 50 succeeded, want exactly 1", won)
	}
	jobs, err := c.Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(jobs.Items) != 1 {
		t.Fatalf("jobs after the /repave race: %v %d", err, len(jobs.Items))
	}
	holder := jobs.Items[0]
	hw, _ := c.Hardwares(ns).Get(ctx, "server-001", metav1.GetOptions{})
	if hw.Status.ActiveJob != holder.Name {
		t.Errorf("status.activeJob=%q, want %q", hw.Status.ActiveJob, holder.Name)
	}
	_, err = c.Jobs(ns).Create(ctx, repaveJob("late"), metav1.CreateOptions{})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), holder.Name) {
		t.Errorf("kubectl-create door while busy: %v, want 409 naming %s", err, holder.Name)
	}

	// The Job finishes: the Hardware is free again.
	holder.Status.Phase = v1alpha1.JobSucceeded
	if _, err := c.Jobs(ns).UpdateStatus(ctx, &holder, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if won := race(t, 50, func(i int) error {
		_, err := c.Jobs(ns).Create(ctx, repaveJob(fmt.Sprintf("create-%02d", i)), metav1.CreateOptions{})
		return err
	}); won != 1 {
		t.Fatalf("Job create: %d of 50 succeeded, want exactly 1", won)
	}
	hw, _ = c.Hardwares(ns).Get(ctx, "server-001", metav1.GetOptions{})
	if !strings.HasPrefix(hw.Status.ActiveJob, "create-") || hw.Status.LastJob != holder.Name {
		t.Errorf("after the second race: activeJob=%q lastJob=%q", hw.Status.ActiveJob, hw.Status.LastJob)
	}

	// Deleting the unfinished holder frees it too.
	if err := c.Jobs(ns).Delete(ctx, hw.Status.ActiveJob, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Hardwares(ns).Repave(ctx, "server-001", req, metav1.CreateOptions{}); err != nil {
		t.Errorf("repave after deleting the holder: %v", err)
	}
}

// TestJobReferencesMustExist: a Job naming a missing Hardware or Template is refused with the field.
func TestJobReferencesMustExist(t *testing.T) {
	ts := startServer(t, "")
	seedInventory(t, ts.Client)
	c := ts.Client.StargateV1alpha1()
	j := repaveJob("ghost-hw")
	j.Spec.HardwareRef.Name = "server-404"
	_, err := c.Jobs(ns).Create(context.Background(), j, metav1.CreateOptions{})
	assertInvalid(t, err, "spec.hardwareRef.name")
	j = repaveJob("ghost-tmpl")
	j.Spec.TemplateRef.Name = "os-9"
	_, err = c.Jobs(ns).Create(context.Background(), j, metav1.CreateOptions{})
	assertInvalid(t, err, "spec.templateRef.name")
}

// TestDeleteProtection: a Hardware or Template an unfinished Job needs cannot
// be deleted; the 409 names the Job.
func TestDeleteProtection(t *testing.T) {
	ts := startServer(t, "")
	seedInventory(t, ts.Client)
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	if _, err := c.Jobs(ns).Create(ctx, repaveJob("busy"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, del := range map[string]func() error{
		"hardware": func() error { return c.Hardwares(ns).Delete(ctx, "server-001", metav1.DeleteOptions{}) },
		"template": func() error { return c.Templates(ns).Delete(ctx, "os-2-0-0", metav1.DeleteOptions{}) },
	} {
		if err := del(); !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "busy") {
			t.Errorf("deleting the %s: %v, want 409 naming Job busy", name, err)
		}
	}
	if err := c.Jobs(ns).Delete(ctx, "busy", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Templates(ns).Delete(ctx, "os-2-0-0", metav1.DeleteOptions{}); err != nil {
		t.Errorf("template after its Job went: %v", err)
	}
	if err := c.Hardwares(ns).Delete(ctx, "server-001", metav1.DeleteOptions{}); err != nil {
		t.Errorf("hardware after its Job went: %v", err)
	}
}

// TestUniqueIdentity: 20 concurrent Hardware with one MAC, one wins; the
// losers get 409 AlreadyExists naming the holder and the field.
func TestUniqueIdentity(t *testing.T) {
	ts := startServer(t, "")
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	won, losers := registrytest.Race(t, 20, apierrors.IsAlreadyExists, func(i int) error {
		_, err := c.Hardwares(ns).Create(ctx, hardware(fmt.Sprintf("server-%02d", i), "aa:bb:cc:dd:ee:01", fmt.Sprintf("10.0.3.%d", i+1)), metav1.CreateOptions{})
		return err
	})
	list, _ := c.Hardwares(ns).List(ctx, metav1.ListOptions{})
	if won != 1 || len(list.Items) != 1 || len(losers) != 19 {
		t.Fatalf("%d won, %d lost, %d stored; want 1, 19, 1", won, len(losers), len(list.Items))
	}
	loser := losers[0]
	status := loser.(apierrors.APIStatus).Status()
	if status.Code != 409 || status.Details == nil || len(status.Details.Causes) != 1 ||
		status.Details.Causes[0].Field != "spec.mac" || !strings.Contains(loser.Error(), ns+"/"+list.Items[0].Name) {
		t.Errorf("loser's error %v (%+v) should be a 409 on spec.mac naming the holder", loser, status.Details)
	}

	// Same IPv4 in the same datacenter: refused; in another: fine.
	_, err := c.Hardwares(ns).Create(ctx, hardware("server-ip", "aa:bb:cc:dd:ee:99", list.Items[0].Spec.IPv4), metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) || !strings.Contains(err.Error(), "spec.ipv4") {
		t.Errorf("duplicate IPv4: %v", err)
	}
	other := hardware("server-ip", "aa:bb:cc:dd:ee:99", list.Items[0].Spec.IPv4)
	other.Namespace = "dc-east"
	if _, err := c.Hardwares("dc-east").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Errorf("same IPv4 in another datacenter: %v", err)
	}
}

// TestLockSurvivesRestartAndIsRepaired: a lock taken before a restart still
// holds after it; a lock whose release was lost (the Job finished behind the
// server's back, as after a crash between the two writes) is repaired by the
// next request.
func TestLockSurvivesRestartAndIsRepaired(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir)
	seedInventory(t, ts.Client)
	ctx := context.Background()
	if _, err := ts.Client.StargateV1alpha1().Jobs(ns).Create(ctx, repaveJob("before-restart"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ts.Stop()

	ts = startServer(t, dir)
	c := ts.Client.StargateV1alpha1()
	_, err := c.Jobs(ns).Create(ctx, repaveJob("after-restart"), metav1.CreateOptions{})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "before-restart") {
		t.Fatalf("after restart: %v, want the lock still held by before-restart", err)
	}

	// Finish the holder straight in etcd: the server never sees an update to release on.
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{ts.EtcdURL}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	resp, err := etcd.Get(ctx, server.DefaultEtcdPathPrefix+"/stargate.io/jobs/"+ns+"/before-restart")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("job key: %v %d", err, len(resp.Kvs))
	}
	var stored map[string]interface{}
	if err := json.Unmarshal(resp.Kvs[0].Value, &stored); err != nil {
		t.Fatal(err)
	}
	stored["status"] = map[string]interface{}{"phase": "Succeeded"}
	value, _ := json.Marshal(stored)
	if _, err := etcd.Put(ctx, string(resp.Kvs[0].Key), string(value)); err != nil {
		t.Fatal(err)
	}
	if hw, _ := c.Hardwares(ns).Get(ctx, "server-001", metav1.GetOptions{}); hw.Status.ActiveJob != "before-restart" {
		t.Fatalf("the lock should still name the finished Job: %q", hw.Status.ActiveJob)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.Jobs(ns).Create(ctx, repaveJob("after-repair"), metav1.CreateOptions{})
		return err == nil, nil // the watch cache catches up with the raw write within moments
	})
	if err != nil {
		t.Fatalf("the stale lock was not repaired: %v", err)
	}
	if hw, _ := c.Hardwares(ns).Get(ctx, "server-001", metav1.GetOptions{}); hw.Status.ActiveJob != "after-repair" {
		t.Errorf("lock held by %q, want after-repair", hw.Status.ActiveJob)
	}
}
