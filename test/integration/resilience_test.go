package integration

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/cmd/server"
	"stargate.io/stargate/pkg/controller/jobs"
	"stargate.io/stargate/pkg/datacenter"
	"stargate.io/stargate/pkg/embeddedetcd"
)

// executions counts the ledger entries of one idempotency key (a Job UID).
func executions(dc *mockDC, uid string) int {
	n := 0
	for _, e := range dc.Ledger() {
		if e.IdempotencyKey == uid {
			n++
		}
	}
	return n
}

// TestDeletingAnUnfinishedJobCancelsItAtTheDatacenter: the finalizer holds a
// running Job until the controller has cancelled it at the datacenter; then
// it goes, and its Hardware is free.
func TestDeletingAnUnfinishedJobCancelsItAtTheDatacenter(t *testing.T) {
	ts, west, running := startLongRepave(t, "doomed")
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	if !slices.Contains(running.Finalizers, v1alpha1.JobCancelFinalizer) {
		t.Fatalf("a Running Job without the %s finalizer: %v", v1alpha1.JobCancelFinalizer, running.Finalizers)
	}
	if err := c.Jobs(ns).Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted Job to go", func() bool {
		_, err := c.Jobs(ns).Get(ctx, "doomed", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if j, ok := west.FindJob(string(running.UID)); !ok || j.State != datacenter.JobCancelled {
		t.Errorf("at the datacenter the deleted Job's job is %+v (found %v), want cancelled", j, ok)
	}
	if _, err := c.Jobs(ns).Create(ctx, repaveJob("next"), metav1.CreateOptions{}); err != nil {
		t.Errorf("the Hardware stayed locked after the deletion: %v", err)
	}
	// A finished Job carries no finalizer: deleting it is immediate.
	if _, err := c.Hardwares(ns).Create(ctx, hardware("server-002", "aa:bb:cc:dd:ee:02", "10.0.1.6"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Jobs(ns).Create(ctx, &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: "quick", Namespace: ns},
		Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: "server-002"}, Operation: v1alpha1.OperationPowerOn}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if done := waitForPhase(t, ts, ns, "quick", v1alpha1.JobSucceeded, 10*time.Second); len(done.Finalizers) != 0 {
		t.Errorf("a Succeeded Job keeps finalizers %v", done.Finalizers)
	}
}

// TestCrashAndRestartAtEachPointRunsOnce stops the server dead at each of the
// dangerous moments of a Job's start, restarts it on the same data, and checks
// that the Job finishes with exactly one execution in the datacenter's ledger.
func TestCrashAndRestartAtEachPointRunsOnce(t *testing.T) {
	for _, point := range []string{jobs.FailpointBeforeSubmit, jobs.FailpointAfterSubmit, jobs.FailpointWhilePolling} {
		t.Run(point, func(t *testing.T) {
			creds, dataDir := t.TempDir(), t.TempDir()
			west := startMockDC(t, "dc-west", creds, func(o *mockdc.Options) { o.RepaveDuration = time.Second })
			crashed := make(chan struct{})
			var once sync.Once
			first := startControllersOn(t, dataDir, creds, func(o *server.Options) {
				o.JobOptions.Failpoint = func(p string) error {
					if p == point {
						once.Do(func() { close(crashed) })
					}
					select {
					case <-crashed: // dead from here on: nothing more happens
						return errors.New("crashed at " + point)
					default:
						return nil
					}
				}
			})
			createDatacenter(t, first, "dc-west", west.URL)
			seedInventory(t, first.Client)
			job, err := first.Client.StargateV1alpha1().Jobs(ns).Create(context.Background(), repaveJob("crashy"), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-crashed:
			case <-time.After(20 * time.Second):
				t.Fatalf("the controller never reached %s", point)
			}
			first.Stop()

			second := startControllersOn(t, dataDir, creds)
			done := waitForPhase(t, second, ns, "crashy", v1alpha1.JobSucceeded, 30*time.Second)
			if n := executions(west, string(job.UID)); n != 1 {
				t.Errorf("crash %s: %d executions in the ledger, want 1", point, n)
			}
			if hw, err := releasedHardware(t, second, ns, "server-001", "crashy"); err != nil ||
				hw.Status.State != v1alpha1.HardwareStateReady || hw.Status.CurrentOS != "2.0.0" || hw.Status.ActiveJob != "" {
				t.Errorf("crash %s: Hardware after the Job: %+v %v", point, hw.Status, err)
			}
			if done.Status.Attempts < 1 {
				t.Errorf("crash %s: %d attempts recorded", point, done.Status.Attempts)
			}
		})
	}
}

// TestOneDatacenterDownTheOtherFinishes: every request to dc-east hangs until
// the client's timeout, tying up dc-east's workers; dc-west's Jobs all finish
// meanwhile, and dc-east's once it answers again.
func TestOneDatacenterDownTheOtherFinishes(t *testing.T) {
	creds := t.TempDir()
	west := startMockDC(t, "dc-west", creds, func(o *mockdc.Options) { o.RebootDuration = 20 * time.Millisecond })
	east := startMockDC(t, "dc-east", creds, func(o *mockdc.Options) { o.RebootDuration = 20 * time.Millisecond })
	if err := east.SetFaults(mockdc.Faults{TimeoutRate: 1}); err != nil {
		t.Fatal(err)
	}
	ts := startWithControllers(t, creds)
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	const perDC = 20
	create := func(i int, name string, dc *mockDC) {
		createDatacenter(t, ts, name, dc.URL)
		for j := range perDC {
			hwName := fmt.Sprintf("server-%03d", j)
			h := hardware(hwName, fmt.Sprintf("aa:bb:cc:0%d:00:%02x", i, j), fmt.Sprintf("10.%d.0.%d", i, j+1))
			h.Namespace = name
			if _, err := c.Hardwares(name).Create(ctx, h, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Jobs(name).Create(ctx, &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: "reboot-" + hwName, Namespace: name},
				Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: hwName}, Operation: v1alpha1.OperationReboot}},
				metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// dc-east's Jobs come first and tie up its workers in hanging submits
	// (each attempt waits out the client's 10s timeout, and is retried)...
	create(1, "dc-east", east)
	time.Sleep(time.Second)
	// ...then dc-west's must still finish long before those hangs end.
	create(0, "dc-west", west)
	succeeded := func(name string) int {
		list, err := c.Jobs(name).List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Succeeded"})
		if err != nil {
			return -1
		}
		return len(list.Items)
	}
	start := time.Now()
	eventually(t, "all of dc-west's Jobs to succeed while dc-east hangs", func() bool { return succeeded("dc-west") == perDC })
	t.Logf("dc-west finished %d Jobs in %s with dc-east hanging", perDC, time.Since(start).Round(time.Millisecond))
	if n := succeeded("dc-east"); n != 0 {
		t.Fatalf("%d of dc-east's Jobs succeeded through a hanging API", n)
	}
	if err := east.SetFaults(mockdc.Faults{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 90*time.Second, true, func(context.Context) (bool, error) {
		return succeeded("dc-east") == perDC, nil
	})
	if err != nil {
		t.Fatalf("dc-east's Jobs did not finish once it answered again: %d of %d", succeeded("dc-east"), perDC)
	}
	for _, dc := range []*mockDC{west, east} {
		if n := len(dc.Ledger()); n != perDC {
			t.Errorf("%d executions in a ledger, want %d", n, perDC)
		}
	}
}

// TestTwoReplicasShareADatacenter runs two replicas on one etcd. One drives
// dc-west (it holds the datacenter's election key); when its lease is
// revoked (what etcd does to a replica paused or cut off past its TTL) while
// a Job is mid-run, the other takes over and the Job finishes with one
// execution.
func TestTwoReplicasShareADatacenter(t *testing.T) {
	etcd, err := embeddedetcd.Start(t.TempDir(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	etcdClient, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcdClient.Close() })
	// The driver of dc-west holds the oldest key under its election prefix.
	const election = "/registry/stargate.io/controllers/datacenters/dc-west/"
	candidates := func() []*mvccKV {
		resp, err := etcdClient.Get(context.Background(), election, clientv3.WithPrefix(),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
		if err != nil {
			return nil
		}
		out := make([]*mvccKV, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			out = append(out, &mvccKV{value: string(kv.Value), lease: kv.Lease})
		}
		return out
	}

	creds := t.TempDir()
	west := startMockDC(t, "dc-west", creds, func(o *mockdc.Options) { o.RepaveDuration = 3 * time.Second })
	external := func(o *server.Options) {
		o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = []string{etcd.ClientURL}
	}
	a := startControllersOn(t, "", creds, external)
	b := startControllersOn(t, "", creds, external)
	createDatacenter(t, a, "dc-west", west.URL)
	eventually(t, "one replica to drive dc-west", func() bool { return len(candidates()) >= 1 })
	driver := candidates()[0]

	seedInventory(t, a.Client)
	ctx := context.Background()
	job, err := b.Client.StargateV1alpha1().Jobs(ns).Create(ctx, repaveJob("handover"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, a, ns, "handover", v1alpha1.JobRunning, 10*time.Second)
	if got, err := a.Client.StargateV1alpha1().Datacenters().Get(ctx, "dc-west", metav1.GetOptions{}); err != nil || got.Status.DrivenBy != driver.value {
		t.Errorf("Datacenter dc-west says it is driven by %q (%v); its election key names %q", got.Status.DrivenBy, err, driver.value)
	}
	if _, err := etcdClient.Revoke(ctx, clientv3.LeaseID(driver.lease)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a replica with a new lease to drive dc-west", func() bool {
		c := candidates()
		return len(c) >= 1 && c[0].lease != driver.lease
	})
	waitForPhase(t, b, ns, "handover", v1alpha1.JobSucceeded, 30*time.Second)
	if n := executions(west, string(job.UID)); n != 1 {
		t.Errorf("the Job handed over mid-run executed %d times, want 1", n)
	}

	// One replica is gone for good: the other drives dc-west, new Jobs
	// still run, once each.
	a.Stop()
	next, err := b.Client.StargateV1alpha1().Jobs(ns).Create(ctx, &v1alpha1.Job{ObjectMeta: metav1.ObjectMeta{Name: "after", Namespace: ns},
		Spec: v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: "server-001"}, Operation: v1alpha1.OperationReboot}},
		metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, b, ns, "after", v1alpha1.JobSucceeded, 30*time.Second)
	if n := executions(west, string(next.UID)); n != 1 {
		t.Errorf("a Job after the handover executed %d times, want 1", n)
	}
}

type mvccKV struct {
	value string
	lease int64
}

// TestMetricsAreServed: /metrics (authorized) carries the controller metrics.
func TestMetricsAreServed(t *testing.T) {
	creds := t.TempDir()
	west := startMockDC(t, "dc-west", creds)
	ts := startWithControllers(t, creds)
	createDatacenter(t, ts, "dc-west", west.URL)
	seedInventory(t, ts.Client)
	ctx := context.Background()
	if _, err := ts.Client.StargateV1alpha1().Jobs(ns).Create(ctx, repaveJob("measured"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ts, ns, "measured", v1alpha1.JobSucceeded, 10*time.Second)
	var body string
	eventually(t, "the controller metrics on /metrics", func() bool {
		raw, err := ts.Client.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		body = string(raw)
		return err == nil && strings.Contains(body, `stargate_datacenter_up{datacenter="dc-west"} 1`)
	})
	for _, want := range []string{
		`stargate_jobs_total{datacenter="dc-west",operation="repave",result="succeeded"}`,
		`stargate_job_duration_seconds_count{datacenter="dc-west",operation="repave",result="succeeded"}`,
		`stargate_datacenter_request_duration_seconds_count{code="202",datacenter="dc-west"}`,
		`stargate_jobs_active{datacenter="dc-west"}`,
		`stargate_datacenter_driven{datacenter="dc-west"} 1`,
		`workqueue_depth{name="stargate-jobs-dc-west"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
