//go:build faults

// Package faults breaks a running Stargate on purpose — kill -9, replicas
// killed, paused and added, etcd gone, datacenters failing, hostile input, a
// long steady load — and checks what it promises: no acknowledged write lost,
// no Job run twice, no Job stuck, no 5xx for bad input. The mock
// datacenters' ledgers are the oracle of what really ran. `make test-faults`
// runs it and prints a summary table; everything listens on 127.0.0.1
// (test/framework's cluster).
package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	clientset "stargate.io/stargate/pkg/generated/clientset/versioned"
	"stargate.io/stargate/test/framework"
)

var (
	env *framework.Cluster
	// sg talks straight to Stargate (admin), past the aggregator, so what a
	// test counts is Stargate's own answers.
	sg clientset.Interface
)

var datacenters = []string{"dc-west", "dc-east"}

func TestMain(m *testing.M) {
	code := run(m)
	os.Exit(code)
}

func run(m *testing.M) int {
	var err error
	env, err = framework.Start("../..", framework.Options{
		RepaveDuration: 1500 * time.Millisecond, RebootDuration: 300 * time.Millisecond, PowerDuration: 200 * time.Millisecond,
		MockDCMaxRunning: 100, MockDCInMemory: true,
	})
	if env != nil {
		defer env.Stop()
	}
	if err == nil {
		err = setUp()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults: starting the cluster:", err)
		if env != nil {
			env.DumpLogs()
		}
		return 1
	}
	code := m.Run()
	printSummary()
	if code != 0 {
		env.DumpLogs()
	} else {
		defer os.RemoveAll(env.Work)
	}
	return code
}

// setUp creates both Datacenters, their namespaces and a Template in each.
func setUp() error {
	var err error
	if sg, err = clientset.NewForConfig(env.RESTConfig("admin", env.StargatePort)); err != nil {
		return err
	}
	ctx := context.Background()
	for _, dc := range datacenters {
		if out, err := env.Kubectl("admin", "create", "namespace", dc); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if _, err := sg.StargateV1alpha1().Datacenters().Create(ctx, &v1alpha1.Datacenter{
			ObjectMeta: metav1.ObjectMeta{Name: dc},
			Spec:       v1alpha1.DatacenterSpec{Endpoint: env.MockDC[dc], MaxConcurrentJobs: ptr.To[int32](100)},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := sg.StargateV1alpha1().Templates(dc).Create(ctx, &v1alpha1.Template{
			ObjectMeta: metav1.ObjectMeta{Name: "ubuntu"},
			Spec:       v1alpha1.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/ubuntu-2.0.0.img"},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// A row of the summary table.
type row struct {
	Fault                         string
	Runs, Jobs                    int
	Lost, Duplicated, Stuck, S5xx int
	Recovery                      string // the worst time back to service, or "-"
	Note                          string
}

var (
	summaryMu sync.Mutex
	summary   []row
)

func record(t *testing.T, r row) {
	t.Helper()
	t.Logf("%s: runs %d, Jobs %d, lost %d, duplicated %d, stuck %d, 5xx %d, recovery %s; %s",
		r.Fault, r.Runs, r.Jobs, r.Lost, r.Duplicated, r.Stuck, r.S5xx, r.Recovery, r.Note)
	summaryMu.Lock()
	defer summaryMu.Unlock()
	summary = append(summary, r)
}

func printSummary() {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\nFault suite, %s, %s\n\n", time.Now().UTC().Format("2006-01-02"), framework.Machine())
	b.WriteString("| fault | runs | Jobs | lost | duplicated | stuck | 5xx | recovery | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range summary {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %d | %s | %s |\n",
			r.Fault, r.Runs, r.Jobs, r.Lost, r.Duplicated, r.Stuck, r.S5xx, r.Recovery, r.Note)
	}
	fmt.Print(b.String())
	if out := os.Getenv("FAULTS_SUMMARY"); out != "" {
		_ = os.WriteFile(out, []byte(b.String()), 0o644)
	}
}

// hwSeq numbers Hardware so every MAC and IPv4 in the suite is unique.
var hwSeq atomic.Int64

func hardware(name string) *v1alpha1.Hardware {
	n := hwSeq.Add(1)
	return &v1alpha1.Hardware{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.HardwareSpec{
			MAC:  fmt.Sprintf("02:fa:%02x:%02x:%02x:%02x", byte(n>>24), byte(n>>16), byte(n>>8), byte(n)),
			IPv4: fmt.Sprintf("10.%d.%d.%d", (n/62500)%250+1, (n/250)%250, n%250+1),
		},
	}
}

// createHardware creates n Hardware named <prefix>-<i> in each datacenter.
func createHardware(t *testing.T, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for _, dc := range datacenters {
		err := framework.FanOut(ctx, n, 16, func(i int) error {
			_, err := sg.StargateV1alpha1().Hardwares(dc).Create(ctx, hardware(fmt.Sprintf("%s-%04d", prefix, i)), metav1.CreateOptions{})
			return err
		})
		if err != nil {
			t.Fatalf("creating Hardware in %s: %v", dc, err)
		}
	}
}

// job is a Job of op on Hardware hw, labelled with the test's run.
func job(name, hw, run string, op v1alpha1.Operation) *v1alpha1.Job {
	j := &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"faults.stargate.io/run": run}},
		Spec:       v1alpha1.JobSpec{HardwareRef: v1alpha1.LocalObjectReference{Name: hw}, Operation: op},
	}
	if op == v1alpha1.OperationRepave {
		j.Spec.TemplateRef = &v1alpha1.LocalObjectReference{Name: "ubuntu"}
	}
	return j
}

// createUntilAcknowledged creates a Job, retrying through outages as a
// client would, until the server acknowledges it. A create whose answer was
// lost is found by its name (409 AlreadyExists). It returns whether the Job
// was acknowledged before ctx ended and how many attempts failed.
func createUntilAcknowledged(ctx context.Context, c clientset.Interface, ns string, j *v1alpha1.Job) (bool, int) {
	failed := 0
	for ctx.Err() == nil {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.StargateV1alpha1().Jobs(ns).Create(attempt, j.DeepCopy(), metav1.CreateOptions{})
		cancel()
		if err == nil || apierrors.IsAlreadyExists(err) {
			return true, failed
		}
		failed++
		time.Sleep(200 * time.Millisecond)
	}
	return false, failed
}

// outcome is what happened to a test's Jobs, judged against the ledgers.
type outcome struct {
	Jobs, Succeeded, Failed int
	// Lost: acknowledged but gone, or Succeeded with no execution in the
	// ledger. Duplicated: operations beyond what the Jobs asked for, per
	// machine. Stuck: not finished when the wait ended.
	Lost, Duplicated, Stuck int
	FailedReasons           map[string]int
}

// waitAndJudge waits (up to timeout) for every Job labelled run to finish,
// then compares them with acknowledged (namespace/name) and the ledgers.
func waitAndJudge(t *testing.T, c clientset.Interface, run string, acknowledged []string, timeout time.Duration) outcome {
	t.Helper()
	ctx := context.Background()
	selector := "faults.stargate.io/run=" + run
	var jobs []v1alpha1.Job
	_ = wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := c.StargateV1alpha1().Jobs("").List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil // the server may be down for a moment: try again
		}
		jobs = list.Items
		for _, j := range jobs {
			if !finished(&j) {
				return false, nil
			}
		}
		return len(jobs) >= len(acknowledged), nil
	})
	// The machines of this run and, for each, how many operations Jobs
	// asked for: every Job (of any run) on it that reached its datacenter.
	// A machine operated more often than that was operated twice — under
	// the same key, or under a key no Job has (what a lost or unstable
	// idempotency key leads to).
	macOf := map[string]string{} // namespace/name -> MAC
	hws, err := c.StargateV1alpha1().Hardwares("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing Hardware: %v", err)
	}
	for _, hw := range hws.Items {
		macOf[hw.Namespace+"/"+hw.Name] = hw.Spec.MAC
	}
	all, err := c.StargateV1alpha1().Jobs("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing all Jobs: %v", err)
	}
	asked := map[string]int{}
	for _, j := range all.Items {
		if j.Status.DCJobID != "" {
			asked[macOf[j.Namespace+"/"+j.Spec.HardwareRef.Name]]++
		}
	}
	mine := map[string]bool{}
	for _, j := range jobs {
		mine[macOf[j.Namespace+"/"+j.Spec.HardwareRef.Name]] = true
	}
	runs := map[string]int{}     // idempotency key -> executions
	operated := map[string]int{} // MAC -> executions
	for _, dc := range datacenters {
		ledger, err := env.Ledger(dc)
		if err != nil {
			t.Fatalf("reading %s's ledger: %v", dc, err)
		}
		for _, e := range ledger {
			runs[e.IdempotencyKey]++
			operated[e.MAC]++
		}
	}
	o := outcome{Jobs: len(acknowledged), FailedReasons: map[string]int{}}
	for mac := range mine {
		if extra := operated[mac] - asked[mac]; extra > 0 {
			o.Duplicated += extra
			t.Errorf("machine %s was operated %d times for %d Jobs", mac, operated[mac], asked[mac])
		}
	}
	present := map[string]bool{}
	for _, j := range jobs {
		present[j.Namespace+"/"+j.Name] = true
		n := runs[string(j.UID)]
		if n > 1 { // counted in Duplicated through its machine
			t.Errorf("Job %s/%s (%s) ran %d times", j.Namespace, j.Name, j.UID, n)
		}
		switch {
		case !finished(&j):
			o.Stuck++
			t.Errorf("Job %s/%s still %s (%s: %s)", j.Namespace, j.Name, j.Status.Phase, j.Status.Reason, j.Status.Message)
		case j.Status.Phase == v1alpha1.JobSucceeded:
			o.Succeeded++
			if n == 0 {
				o.Lost++
				t.Errorf("Job %s/%s Succeeded but its datacenter never ran it", j.Namespace, j.Name)
			}
		default:
			o.Failed++
			o.FailedReasons[j.Status.Reason]++
			if j.Status.Reason == "" || j.Status.Message == "" {
				t.Errorf("Job %s/%s Failed without a reason and message: %+v", j.Namespace, j.Name, j.Status)
			}
		}
	}
	for _, key := range acknowledged {
		if !present[key] {
			o.Lost++
			t.Errorf("Job %s was acknowledged and is gone", key)
		}
	}
	return o
}

func finished(j *v1alpha1.Job) bool {
	return j.Status.Phase == v1alpha1.JobSucceeded || j.Status.Phase == v1alpha1.JobFailed
}

// ops cycles through every operation.
var ops = []v1alpha1.Operation{v1alpha1.OperationReboot, v1alpha1.OperationPowerOff, v1alpha1.OperationPowerOn, v1alpha1.OperationRepave}

// is5xx reports whether err is a server error answer.
func is5xx(err error) bool {
	var status apierrors.APIStatus
	return errors.As(err, &status) && status.Status().Code >= 500
}

// reasons formats a reason count map in a stable order.
func reasons(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// metricValue reads an unlabelled metric from a Stargate's /metrics.
func metricValue(c clientset.Interface, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := c.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no %s in /metrics", name)
}
