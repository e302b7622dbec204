package plugin

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clienttesting "k8s.io/client-go/testing"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// script makes the first watch of Campaigns deliver states in order (later
// watches, should the informer re-watch, deliver nothing).
func (h *harness) script(resource string, events ...watch.Event) {
	var once sync.Once
	h.client.PrependWatchReactor(resource, func(clienttesting.Action) (bool, watch.Interface, error) {
		w := watch.NewFakeWithChanSize(len(events), false)
		once.Do(func() {
			for _, e := range events {
				w.Action(e.Type, e.Object)
			}
		})
		return true, w, nil
	})
}

func modified(objs ...runtime.Object) []watch.Event {
	out := make([]watch.Event, len(objs))
	for i, o := range objs {
		out[i] = watch.Event{Type: watch.Modified, Object: o}
	}
	return out
}

// progressed returns c with rv, wave and counts set, the counts split over
// its two datacenters a quarter east, three quarters west.
func progressed(rv string, wave, succeeded, failed int32, edit ...func(*v1alpha1.Campaign)) *v1alpha1.Campaign {
	c := campaign("os-2")
	c.ResourceVersion = rv
	c.Status.CurrentWave = wave
	c.Status.Failures = nil
	split := func(targets, succeeded, failed int32) v1alpha1.CampaignCounts {
		return v1alpha1.CampaignCounts{Targets: targets, Succeeded: succeeded, Failed: failed, Pending: targets - succeeded - failed}
	}
	c.Status.Counts = split(5000, succeeded, failed)
	c.Status.Datacenters[0].Counts = split(1250, succeeded/4, failed/2)
	c.Status.Datacenters[1].Counts = split(3750, succeeded-succeeded/4, failed-failed/2)
	for _, e := range edit {
		e(c)
	}
	return c
}

func pausedDCs(reason string, dcs ...int) func(*v1alpha1.Campaign) {
	return func(c *v1alpha1.Campaign) {
		for _, i := range dcs {
			c.Status.Datacenters[i].PausedReason = reason
		}
	}
}

func withPhase(p v1alpha1.CampaignPhase) func(*v1alpha1.Campaign) {
	return func(c *v1alpha1.Campaign) { c.Status.Phase = p }
}

// toComplete is a Campaign's life from wave 1 to Complete, with a repeated
// state (no new line) and pauses between waves.
func toComplete() (*v1alpha1.Campaign, []watch.Event) {
	return progressed("10", 1, 0, 0), modified(
		progressed("11", 1, 25, 0),
		progressed("12", 1, 25, 0), // only the resourceVersion changed
		progressed("13", 1, 50, 0, pausedDCs(v1alpha1.CampaignReasonBaking, 0, 1)),
		progressed("14", 2, 300, 1),
		progressed("15", 2, 548, 2, func(c *v1alpha1.Campaign) {
			condition(c, v1alpha1.CampaignConditionPaused, v1alpha1.CampaignReasonAwaitingApproval, "wave 3 awaits approval (spec.approvedWaves is 2)")
		}),
		progressed("16", 3, 2000, 2),
		progressed("17", 3, 4998, 2, withPhase(v1alpha1.CampaignComplete)),
	)
}

func TestStatusWatchPipe(t *testing.T) {
	initial, events := toComplete()
	h := newHarness(t, false, initial)
	h.script("campaigns", events...)
	if err := h.run("status", "campaign/os-2"); err != nil {
		t.Fatalf("status: %v", err)
	}
	golden(t, "status-pipe.txt", h.out.String())
}

func TestStatusWatchTerminal(t *testing.T) {
	initial, events := toComplete()
	h := newHarness(t, true, initial)
	h.script("campaigns", events...)
	if err := h.run("status", "os-2"); err != nil {
		t.Fatalf("status: %v", err)
	}
	if got, want := h.out.String(), "campaign \"os-2\" successfully completed\n"; got != want {
		t.Errorf("after the bars: %q, want %q", got, want)
	}
	golden(t, "status-bars-complete.txt", h.screen.lastFrame())
}

func TestStatusWatchTerminalTripped(t *testing.T) {
	next := progressed("12", 2, 300, 6, pausedDCs(v1alpha1.CampaignReasonFailureBudgetExceeded, 0), pausedDCs(v1alpha1.CampaignReasonOutsideWindow, 1))
	h := newHarness(t, true, progressed("10", 2, 100, 0))
	h.script("campaigns", modified(progressed("11", 2, 200, 2), next)...)
	err := h.run("status", "os-2")
	if err == nil || !strings.Contains(err.Error(), "failure budget exceeded: datacenter dc-east (3 failed of 1250)") {
		t.Fatalf("status: %v, want a tripped budget in dc-east", err)
	}
	golden(t, "status-bars-tripped.txt", h.screen.lastFrame())
}

func TestStatusWatchEnds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []watch.Event
		args   []string
		err    string // "" for success
	}{
		{
			name:   "complete",
			events: modified(progressed("11", 1, 4998, 2, withPhase(v1alpha1.CampaignComplete))),
		},
		{
			name: "failed",
			events: modified(progressed("11", 1, 100, 300, withPhase(v1alpha1.CampaignFailed), func(c *v1alpha1.Campaign) {
				condition(c, v1alpha1.CampaignConditionFailed, v1alpha1.CampaignReasonFailureBudgetExceeded, "300 failed, over the global budget of 250")
			})),
			err: `campaign "os-2" failed: FailureBudgetExceeded: 300 failed, over the global budget of 250 (400/5000 done, 300 failed)`,
		},
		{
			name:   "cancelled",
			events: modified(progressed("11", 1, 100, 0, withPhase(v1alpha1.CampaignCancelled))),
			err:    `campaign "os-2" was cancelled`,
		},
		{
			name: "global budget tripped",
			events: modified(progressed("11", 1, 100, 260, withPhase(v1alpha1.CampaignPaused), func(c *v1alpha1.Campaign) {
				condition(c, v1alpha1.CampaignConditionPaused, v1alpha1.CampaignReasonFailureBudgetExceeded, "global: 260 failed, budget 250")
			})),
			err: `campaign "os-2" is paused: failure budget exceeded: global: 260 failed, budget 250`,
		},
		{
			name:   "datacenter budget tripped",
			events: modified(progressed("11", 1, 100, 4, pausedDCs(v1alpha1.CampaignReasonFailureBudgetExceeded, 1))),
			err:    "failure budget exceeded: datacenter dc-west (2 failed of 3750)",
		},
		{
			name: "tripped, then raised: the stale status is not judged",
			events: modified(
				progressed("11", 1, 100, 4, pausedDCs(v1alpha1.CampaignReasonFailureBudgetExceeded, 1), func(c *v1alpha1.Campaign) { c.Generation = 2 }),
				progressed("12", 1, 4996, 4, withPhase(v1alpha1.CampaignComplete), func(c *v1alpha1.Campaign) { c.Generation, c.Status.ObservedGeneration = 2, 2 }),
			),
		},
		{
			name:   "deleted",
			events: []watch.Event{{Type: watch.Deleted, Object: progressed("11", 1, 100, 0)}},
			err:    `campaign "os-2" was deleted`,
		},
		{
			name: "timeout",
			args: []string{"--timeout=300ms"},
			err:  `timed out after 300ms waiting for campaign "os-2" to finish: 10 of 5000 servers done (0 failed)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, false, progressed("10", 1, 10, 0))
			h.script("campaigns", tc.events...)
			err := h.run(append([]string{"status", "campaign/os-2"}, tc.args...)...)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("status: %v", err)
				}
				if !strings.HasSuffix(h.out.String(), "campaign \"os-2\" successfully completed\n") {
					t.Errorf("output:\n%s", h.out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("status: %v, want an error with %q", err, tc.err)
			}
		})
	}
}

func TestStatusOnce(t *testing.T) {
	tripped := progressed("10", 2, 300, 4, pausedDCs(v1alpha1.CampaignReasonFailureBudgetExceeded, 0))
	for _, tc := range []struct {
		name     string
		campaign *v1alpha1.Campaign
		out, err string
	}{
		{
			name:     "running",
			campaign: progressed("10", 2, 410, 2),
			out:      `Waiting for campaign "os-2" to finish: 412 of 5000 servers done (wave 2/3, 2 failed)...` + "\n",
		},
		{
			name: "not started",
			campaign: func() *v1alpha1.Campaign {
				c := campaign("os-2")
				c.Status = v1alpha1.CampaignStatus{}
				c.Status.Conditions = append(c.Status.Conditions, condFalse(v1alpha1.CampaignConditionValidated, "TemplateMissing", "dc-west has no Template os-2"))
				return c
			}(),
			out: `Waiting for campaign "os-2" to start: TemplateMissing: dc-west has no Template os-2...` + "\n",
		},
		{
			name:     "complete",
			campaign: progressed("10", 3, 4998, 2, withPhase(v1alpha1.CampaignComplete)),
			out:      `campaign "os-2" successfully completed` + "\n",
		},
		{
			name:     "tripped",
			campaign: tripped,
			err:      "failure budget exceeded: datacenter dc-east (2 failed of 1250)",
		},
		{
			name:     "failed",
			campaign: progressed("10", 3, 100, 400, withPhase(v1alpha1.CampaignFailed)),
			err:      `campaign "os-2" failed: a failure budget was exceeded (500/5000 done, 400 failed)`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, false, tc.campaign)
			err := h.run("status", "camp/os-2", "--watch=false")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("status: %v, want an error with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := h.out.String(); got != tc.out {
				t.Errorf("got %q, want %q", got, tc.out)
			}
			if n := len(h.actions("watch", "campaigns")); n != 0 {
				t.Errorf("--watch=false watched %d times", n)
			}
		})
	}
}

func TestStatusArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"status"}, "accepts 1 arg"},
		{[]string{"status", "job/x"}, "is not a Campaign"},
		{[]string{"status", "x", "--timeout=-1s"}, "must not be negative"},
		{[]string{"status", "missing"}, `campaigns.stargate.io "missing" not found`},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			err := newHarness(t, false).run(tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
		})
	}
}
