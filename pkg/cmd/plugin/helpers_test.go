package plugin

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vbauerster/mpb/v8"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clienttesting "k8s.io/client-go/testing"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/generated/clientset/versioned"
	"stargate.io/stargate/pkg/generated/clientset/versioned/fake"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// harness runs kubectl stargate commands against a fake clientset.
type harness struct {
	t        *testing.T
	client   *fake.Clientset
	out, err *bytes.Buffer
	env      *environment
	screen   *screen // set when terminal
}

// newHarness builds the environment over a fake clientset holding objs; the
// namespace is -n's, else "default". With terminal, the output counts as a
// terminal and the bars draw on a fixed-size screen.
func newHarness(t *testing.T, terminal bool, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, client: fake.NewSimpleClientset(objs...), out: &bytes.Buffer{}, err: &bytes.Buffer{}}
	flags := genericclioptions.NewConfigFlags(false)
	h.env = &environment{
		streams:   genericiooptions.IOStreams{In: strings.NewReader(""), Out: h.out, ErrOut: h.err},
		flags:     flags,
		newClient: func() (versioned.Interface, error) { return h.client, nil },
		namespace: func() (string, bool, error) {
			if *flags.Namespace != "" {
				return *flags.Namespace, true, nil
			}
			return "default", false, nil
		},
		isTerminal: func(io.Writer) bool { return terminal },
	}
	if terminal {
		h.screen = &screen{}
		h.env.newBars = func(_ io.Writer, campaign string) view {
			// Manual refresh that never ticks: mpb draws when the bars stop,
			// so the last frame is the final state, whatever the timing.
			return newBarViewWith(campaign, mpb.WithConsoleWriter(h.screen),
				mpb.WithManualRefresh(make(chan any)), mpb.WithWidth(barWidth))
		}
	}
	return h
}

// run runs kubectl stargate with args and returns its error.
func (h *harness) run(args ...string) error {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := newRootCommand(h.env)
	cmd.SetArgs(args)
	cmd.SetOut(h.out)
	cmd.SetErr(h.err)
	return cmd.ExecuteContext(ctx)
}

// actions are the fake client's actions of a verb on a resource.
func (h *harness) actions(verb, resource string) []clienttesting.Action {
	var out []clienttesting.Action
	for _, a := range h.client.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource {
			out = append(out, a)
		}
	}
	return out
}

// screen is a fixed-size terminal for mpb that keeps each frame it draws.
type screen struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	frames []string
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) ReadFrom(r io.Reader) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.ReadFrom(r)
}

func (s *screen) IsTerminal() bool { return true }

func (s *screen) GetTermSize() (int, int, error) { return 120, 40, nil }

// Flush ends a frame: it keeps it, its lines' trailing blanks trimmed.
func (s *screen) Flush(int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := strings.Split(s.buf.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	s.frames = append(s.frames, strings.Join(lines, "\n"))
	s.buf.Reset()
	return nil
}

// lastFrame is the last frame drawn.
func (s *screen) lastFrame() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.frames) == 0 {
		return ""
	}
	return s.frames[len(s.frames)-1]
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// campaign is a Running Campaign over two datacenters, in wave 2 of 3.
func campaign(name string) *v1alpha1.Campaign {
	start := metav1.NewTime(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC))
	return &v1alpha1.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1, ResourceVersion: "10"},
		Spec: v1alpha1.CampaignSpec{
			Operation:   v1alpha1.OperationRepave,
			TemplateRef: &v1alpha1.LocalObjectReference{Name: "os-2"},
		},
		Status: v1alpha1.CampaignStatus{
			Phase:              v1alpha1.CampaignRunning,
			ObservedGeneration: 1,
			StartTime:          &start,
			CurrentWave:        2,
			Counts:             v1alpha1.CampaignCounts{Targets: 5000, Pending: 4560, Running: 28, Succeeded: 410, Failed: 2},
			Datacenters: []v1alpha1.CampaignDatacenterStatus{
				{Name: "dc-east", Counts: v1alpha1.CampaignCounts{Targets: 1250, Pending: 1100, Running: 10, Succeeded: 139, Failed: 1}},
				{Name: "dc-west", Counts: v1alpha1.CampaignCounts{Targets: 3750, Pending: 3460, Running: 18, Succeeded: 271, Failed: 1}},
			},
			Plan: []v1alpha1.CampaignWavePlan{
				{Number: 1, Members: 50, Datacenters: []v1alpha1.CampaignDatacenterPlan{{Name: "dc-east", Members: 12}, {Name: "dc-west", Members: 38}},
					FirstMembers: []string{"dc-east/server-0001", "dc-west/server-0001"}},
				{Number: 2, Members: 500, Datacenters: []v1alpha1.CampaignDatacenterPlan{{Name: "dc-east", Members: 125}, {Name: "dc-west", Members: 375}}},
				{Number: 3, Members: 4450, Datacenters: []v1alpha1.CampaignDatacenterPlan{{Name: "dc-east", Members: 1113}, {Name: "dc-west", Members: 3337}}},
			},
			Failures: []v1alpha1.CampaignFailure{
				{Datacenter: "dc-west", Hardware: "server-0107", Job: "server-0107-os-2-9f8e7d", Wave: 2, Reason: "ActiveDeadlineExceeded"},
				{Datacenter: "dc-east", Hardware: "server-0042", Job: "server-0042-os-2-1a2b3c", Wave: 1, Reason: "DatacenterError"},
			},
		},
	}
}

// condition sets a condition on c.
func condition(c *v1alpha1.Campaign, typ, reason, message string) {
	c.Status.Conditions = append(c.Status.Conditions, metav1.Condition{
		Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: message,
		LastTransitionTime: metav1.NewTime(time.Date(2026, 11, 28, 11, 0, 0, 0, time.UTC)),
	})
}

// condFalse is a False condition.
func condFalse(typ, reason, message string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: reason, Message: message,
		LastTransitionTime: metav1.NewTime(time.Date(2026, 11, 28, 11, 0, 0, 0, time.UTC))}
}
