package integration

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"stargate.io/stargate/mockdc"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/cmd/server"
	"stargate.io/stargate/pkg/controller/jobs"
)

// mockDC is a mock datacenter on httptest (127.0.0.1) with a token in credsDir.
type mockDC struct {
	*mockdc.Server
	URL string
}

func startMockDC(t *testing.T, name, credsDir string, mutate ...func(*mockdc.Options)) *mockDC {
	t.Helper()
	token := filepath.Join(credsDir, name)
	if err := os.WriteFile(token, []byte("token-of-"+name), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := mockdc.DefaultOptions(name)
	opts.TokenFile = token
	opts.RepaveDuration, opts.RebootDuration, opts.PowerDuration = 300*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	for _, m := range mutate {
		m(&opts)
	}
	s, err := mockdc.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &mockDC{Server: s, URL: srv.URL}
}

// startWithControllers runs the server with the controller loop, fast polling,
// and the credentials of the given mock datacenters.
func startWithControllers(t *testing.T, credsDir string) *testServer {
	return startControllersOn(t, "", credsDir)
}

// startControllersOn is startWithControllers on dataDir (fresh when empty),
// with further customizations.
func startControllersOn(t *testing.T, dataDir, credsDir string, customize ...func(*server.Options)) *testServer {
	return startServer(t, dataDir, append([]func(*server.Options){func(o *server.Options) {
		o.Controllers = true
		o.DatacenterCredentialsDir = credsDir
		o.JobOptions = jobs.Options{PollInterval: 50 * time.Millisecond, WaitInterval: 200 * time.Millisecond}
		o.ProbeInterval, o.HardwareRecheck = 100*time.Millisecond, 200*time.Millisecond
		// A replica that stopped without resigning blocks its successor for
		// this long: short, so restart tests do not wait out 15s.
		o.LeaderElectionTTL = 2 * time.Second
	}}, customize...)...)
}

func createDatacenter(t *testing.T, ts *testServer, name, url string) {
	t.Helper()
	if _, err := ts.Client.StargateV1alpha1().Datacenters().Create(context.Background(), &v1alpha1.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.DatacenterSpec{Endpoint: url},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitForPhase(t *testing.T, ts *testServer, namespace, name string, phase v1alpha1.JobPhase, timeout time.Duration) *v1alpha1.Job {
	t.Helper()
	var job *v1alpha1.Job
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var err error
		job, err = ts.Client.StargateV1alpha1().Jobs(namespace).Get(ctx, name, metav1.GetOptions{})
		return err == nil && job.Status.Phase == phase, nil
	})
	if err != nil {
		t.Fatalf("Job %s/%s did not reach %s: last status %+v", namespace, name, phase, job.Status)
	}
	return job
}

// releasedHardware waits for the Hardware name to be released by job and
// returns it. The release is the server's write that follows a Job's last
// status write in the same request, so a reader polling the Job can see it
// finished an instant before its Hardware is released.
func releasedHardware(t *testing.T, ts *testServer, namespace, name, job string) (*v1alpha1.Hardware, error) {
	t.Helper()
	var hw *v1alpha1.Hardware
	var err error
	_ = wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		hw, err = ts.Client.StargateV1alpha1().Hardwares(namespace).Get(ctx, name, metav1.GetOptions{})
		return err == nil && hw.Status.ActiveJob != job, nil
	})
	return hw, err
}

// TestSeedWalkThrough: the seed's README — repave server-001 in dc-west, the
// Job goes Pending -> Running -> Succeeded, the Hardware ends ready with 2.0.0,
// and the datacenter ran it exactly once.
func TestSeedWalkThrough(t *testing.T) {
	creds := t.TempDir()
	west := startMockDC(t, "dc-west", creds)
	ts := startWithControllers(t, creds)
	createDatacenter(t, ts, "dc-west", west.URL)
	seedInventory(t, ts.Client)
	ctx := context.Background()

	created, err := ts.Client.StargateV1alpha1().Jobs(ns).Create(ctx, repaveJob("repave-server-001"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	running := waitForPhase(t, ts, ns, created.Name, v1alpha1.JobRunning, 10*time.Second)
	if running.Status.DCJobID == "" || running.Status.Template == nil || running.Status.Template.OSVersion != "2.0.0" {
		t.Errorf("running job status: %+v", running.Status)
	}
	done := waitForPhase(t, ts, ns, created.Name, v1alpha1.JobSucceeded, 20*time.Second)
	if done.Status.CompletionTime == nil || !hasCondition(done.Status.Conditions, jobs.ConditionComplete) {
		t.Errorf("succeeded job status: %+v", done.Status)
	}
	hw, err := releasedHardware(t, ts, ns, "server-001", created.Name)
	if err != nil {
		t.Fatal(err)
	}
	if hw.Status.State != v1alpha1.HardwareStateReady || hw.Status.CurrentOS != "2.0.0" || hw.Status.ActiveJob != "" || hw.Status.LastJob != created.Name {
		t.Errorf("hardware status after the repave: %+v", hw.Status)
	}
	ledger := west.Ledger()
	if len(ledger) != 1 || ledger[0].IdempotencyKey != string(created.UID) || ledger[0].DCJobID != done.Status.DCJobID {
		t.Errorf("ledger %+v, want one execution keyed by the Job's UID", ledger)
	}
}

// TestJobsWaitForTheirDatacenter: no Datacenter, then a paused one, hold a Job
// Pending with a reason; it starts by itself once the Datacenter is usable.
func TestJobsWaitForTheirDatacenter(t *testing.T) {
	creds := t.TempDir()
	west := startMockDC(t, "dc-west", creds)
	ts := startWithControllers(t, creds)
	seedInventory(t, ts.Client)
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	if _, err := c.Jobs(ns).Create(ctx, repaveJob("waiting"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForReason(t, ts, "waiting", jobs.ReasonDatacenterNotFound)

	if _, err := c.Datacenters().Create(ctx, &v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: ns},
		Spec: v1alpha1.DatacenterSpec{Endpoint: west.URL, Paused: true}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitForReason(t, ts, "waiting", jobs.ReasonDatacenterPaused)
	if n := len(west.Ledger()); n != 0 {
		t.Fatalf("a paused datacenter ran %d jobs", n)
	}

	// The prober writes the Datacenter's status meanwhile: re-read on conflicts.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		dc, err := c.Datacenters().Get(ctx, ns, metav1.GetOptions{})
		if err != nil {
			return err
		}
		dc.Spec.Paused = false
		_, err = c.Datacenters().Update(ctx, dc, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	waitForPhase(t, ts, ns, "waiting", v1alpha1.JobSucceeded, 20*time.Second)
}

func waitForReason(t *testing.T, ts *testServer, name, reason string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		job, err := ts.Client.StargateV1alpha1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && job.Status.Phase == v1alpha1.JobPending && job.Status.Reason == reason, nil
	})
	if err != nil {
		t.Fatalf("Job %s never waited with reason %s", name, reason)
	}
}

func hasCondition(conds []metav1.Condition, typ string) bool {
	for _, c := range conds {
		if c.Type == typ && c.Status == metav1.ConditionTrue {
			return true
		}
	}
	return false
}

// TestManyJobsAcrossTwoDatacenters: 100 Jobs (one per Hardware) in each of
// two datacenters all finish, each executed exactly once.
func TestManyJobsAcrossTwoDatacenters(t *testing.T) {
	creds := t.TempDir()
	dcs := map[string]*mockDC{
		"dc-west": startMockDC(t, "dc-west", creds, func(o *mockdc.Options) { o.RebootDuration = 20 * time.Millisecond }),
		"dc-east": startMockDC(t, "dc-east", creds, func(o *mockdc.Options) { o.RebootDuration = 20 * time.Millisecond }),
	}
	ts := startWithControllers(t, creds)
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	const perDC = 100
	uids := map[string]bool{}
	for name, dc := range dcs {
		createDatacenter(t, ts, name, dc.URL)
		for i := range perDC {
			hwName := fmt.Sprintf("server-%03d", i)
			h := hardware(hwName, fmt.Sprintf("aa:bb:cc:%02x:00:%02x", len(name), i), fmt.Sprintf("10.%d.0.%d", len(name), i+1))
			h.Namespace = name
			if name == "dc-east" {
				h.Spec.MAC = fmt.Sprintf("aa:bb:cc:ee:00:%02x", i)
			}
			if _, err := c.Hardwares(name).Create(ctx, h, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			job, err := c.Jobs(name).Create(ctx, &v1alpha1.Job{
				ObjectMeta: metav1.ObjectMeta{Name: "reboot-" + hwName, Namespace: name},
				Spec:       v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: hwName}, Operation: v1alpha1.OperationReboot},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			uids[string(job.UID)] = true
		}
	}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		succeeded := 0
		for name := range dcs {
			list, err := c.Jobs(name).List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Succeeded"})
			if err != nil {
				return false, nil
			}
			succeeded += len(list.Items)
		}
		return succeeded == 2*perDC, nil
	})
	if err != nil {
		t.Fatalf("not all %d Jobs succeeded: %v", 2*perDC, err)
	}
	executions := map[string]int{}
	for _, dc := range dcs {
		for _, e := range dc.Ledger() {
			executions[e.IdempotencyKey]++
		}
	}
	if len(executions) != 2*perDC {
		t.Errorf("%d distinct executions, want %d", len(executions), 2*perDC)
	}
	for key, n := range executions {
		if n != 1 || !uids[key] {
			t.Errorf("key %s executed %d times (known job: %v)", key, n, uids[key])
		}
	}
}

// startLongRepave runs the server with controllers and a dc-west whose
// repaves take an hour, and returns once repave Job name is Running there.
func startLongRepave(t *testing.T, name string) (*testServer, *mockDC, *v1alpha1.Job) {
	t.Helper()
	creds := t.TempDir()
	west := startMockDC(t, "dc-west", creds, func(o *mockdc.Options) { o.RepaveDuration = time.Hour })
	ts := startWithControllers(t, creds)
	createDatacenter(t, ts, "dc-west", west.URL)
	seedInventory(t, ts.Client)
	if _, err := ts.Client.StargateV1alpha1().Jobs(ns).Create(context.Background(), repaveJob(name), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ts, west, waitForPhase(t, ts, ns, name, v1alpha1.JobRunning, 10*time.Second)
}

// TestCancelARunningRepave: spec.cancel stops the job at the datacenter, the
// Job fails with reason Cancelled, and the Hardware is free for the next Job.
func TestCancelARunningRepave(t *testing.T) {
	ts, west, running := startLongRepave(t, "long")
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		j, err := c.Jobs(ns).Get(ctx, "long", metav1.GetOptions{})
		if err != nil {
			return err
		}
		j.Spec.Cancel = true
		_, err = c.Jobs(ns).Update(ctx, j, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	failed := waitForPhase(t, ts, ns, "long", v1alpha1.JobFailed, 10*time.Second)
	if failed.Status.Reason != jobs.ReasonCancelledByUser {
		t.Errorf("reason %q, want %s", failed.Status.Reason, jobs.ReasonCancelledByUser)
	}
	if _, err := c.Jobs(ns).Create(ctx, repaveJob("next"), metav1.CreateOptions{}); err != nil {
		t.Errorf("the Hardware stayed locked after the cancel: %v", err)
	}
	if n := executions(west, string(running.UID)); n != 1 {
		t.Errorf("the cancelled Job executed %d times, want 1", n)
	}
}

// TestDatacenterAndHardwareStatus: a Datacenter's Ready condition follows its
// API (down during an outage), and Hardware gets its state and OS from the
// datacenter, or unknown when the datacenter does not know it.
func TestDatacenterAndHardwareStatus(t *testing.T) {
	creds := t.TempDir()
	west := startMockDC(t, "dc-west", creds, func(o *mockdc.Options) {
		o.Inventory = []mockdc.InventoryMachine{{MAC: "aa:bb:cc:dd:ee:01", CurrentOS: "1.9.0"}}
	})
	ts := startWithControllers(t, creds)
	createDatacenter(t, ts, "dc-west", west.URL)
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	for _, h := range []*v1alpha1.Hardware{hardware("known", "aa:bb:cc:dd:ee:01", "10.0.1.5"), hardware("stranger", "aa:bb:cc:dd:ee:02", "10.0.1.6")} {
		if _, err := c.Hardwares(ns).Create(ctx, h, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "Hardware status from the datacenter", func() bool {
		known, err1 := c.Hardwares(ns).Get(ctx, "known", metav1.GetOptions{})
		stranger, err2 := c.Hardwares(ns).Get(ctx, "stranger", metav1.GetOptions{})
		return err1 == nil && err2 == nil && known.Status.State == v1alpha1.HardwareStateReady && known.Status.CurrentOS == "1.9.0" &&
			stranger.Status.State == v1alpha1.HardwareStateUnknown
	})
	readyIs := func(status metav1.ConditionStatus) func() bool {
		return func() bool {
			dc, err := c.Datacenters().Get(ctx, "dc-west", metav1.GetOptions{})
			if err != nil || dc.Status.LastProbeTime == nil {
				return false
			}
			for _, cond := range dc.Status.Conditions {
				if cond.Type == "Ready" {
					return cond.Status == status
				}
			}
			return false
		}
	}
	eventually(t, "Ready=True", readyIs(metav1.ConditionTrue))
	if err := west.SetFaults(mockdc.Faults{Outage: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Ready=False during the outage", readyIs(metav1.ConditionFalse))
	if err := west.SetFaults(mockdc.Faults{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Ready=True after the outage", readyIs(metav1.ConditionTrue))
}

// TestHardwareIsLookedUpOnceItsDatacenterIsDriven: the Hardware watch drops
// the events of datacenters this replica does not drive, so a Hardware
// created (or changed) while no replica drives its datacenter — here, before
// its Datacenter exists; in a cluster, during a handoff — must be looked up
// when a replica starts driving it, not at the next sweep (an hour here).
func TestHardwareIsLookedUpOnceItsDatacenterIsDriven(t *testing.T) {
	creds := t.TempDir()
	west := startMockDC(t, "dc-west", creds)
	ts := startControllersOn(t, "", creds, func(o *server.Options) { o.HardwareRecheck = time.Hour })
	ctx := context.Background()
	c := ts.Client.StargateV1alpha1()
	if _, err := c.Hardwares(ns).Create(ctx, hardware("early", "aa:bb:cc:dd:ee:02", "10.0.1.6"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // its watch event comes, and goes: nobody drives dc-west
	createDatacenter(t, ts, "dc-west", west.URL)
	eventually(t, "the Hardware created before its datacenter was driven looked up", func() bool {
		h, err := c.Hardwares(ns).Get(ctx, "early", metav1.GetOptions{})
		return err == nil && h.Status.State == v1alpha1.HardwareStateUnknown
	})
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 20*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("never: %s", what)
	}
}
