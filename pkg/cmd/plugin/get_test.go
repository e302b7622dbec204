package plugin

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

func TestGetTree(t *testing.T) {
	c := campaign("os-2")
	next := metav1.NewTime(time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC))
	c.Status.Datacenters[0].PausedReason = v1alpha1.CampaignReasonFailureBudgetExceeded
	c.Status.Datacenters[1].PausedReason = v1alpha1.CampaignReasonOutsideWindow
	c.Status.Datacenters[1].NextWindow = &next
	c.Status.Datacenters[1].Counts.Failed = 3 // two beyond the capped list
	c.Status.Datacenters = append(c.Status.Datacenters, v1alpha1.CampaignDatacenterStatus{Name: "dc-north"})
	c.Status.Failures = append(c.Status.Failures,
		v1alpha1.CampaignFailure{Datacenter: "dc-east", Hardware: "server-0007", Job: "server-0007-os-2-77aa00", Wave: 1})
	c.Status.Datacenters[0].Counts.Failed = 2
	c.Status.Counts.Failed = 5

	h := newHarness(t, false, c)
	if err := h.run("get", "campaign/os-2"); err != nil {
		t.Fatal(err)
	}
	golden(t, "get-tree.txt", h.out.String())
}

func TestGetTreeBeforeStart(t *testing.T) {
	c := &v1alpha1.Campaign{ObjectMeta: metav1.ObjectMeta{Name: "os-3"}, Spec: v1alpha1.CampaignSpec{Operation: v1alpha1.OperationReboot}}
	h := newHarness(t, false, c)
	if err := h.run("get", "os-3"); err != nil {
		t.Fatal(err)
	}
	want := "campaign/os-3  reboot  Pending  0/0 done, 0 failed\n" +
		"└── no datacenter yet: the members are fixed when the Campaign starts\n"
	if got := h.out.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestGetOutput(t *testing.T) {
	h := newHarness(t, false, campaign("os-2"))
	if err := h.run("get", "camp/os-2", "-o", "yaml"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"apiVersion: stargate.io/v1alpha1", "kind: Campaign", "name: os-2", "currentWave: 2"} {
		if !strings.Contains(h.out.String(), want) {
			t.Errorf("-o yaml lacks %q:\n%s", want, h.out)
		}
	}
	h = newHarness(t, false, campaign("os-2"))
	if err := h.run("get", "os-2", "-o", "name"); err != nil {
		t.Fatal(err)
	}
	if got := h.out.String(); got != "campaign.stargate.io/os-2\n" {
		t.Errorf("-o name printed %q", got)
	}
}

func TestGetNotFound(t *testing.T) {
	h := newHarness(t, false)
	err := h.run("get", "campaign/nope")
	if err == nil || !strings.Contains(err.Error(), `"nope" not found`) {
		t.Fatalf("got %v, want not found", err)
	}
}
