package plugin

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clienttesting "k8s.io/client-go/testing"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// answerRepaves makes POST hardwares/NAME/repave answer as the server does:
// the RepaveRequest with status.job naming the Job (NAME-<template>-1a2b3c),
// or NotFound for a Hardware not in known.
func (h *harness) answerRepaves(known ...string) {
	h.client.PrependReactor("create", "hardwares", func(a clienttesting.Action) (bool, runtime.Object, error) {
		ca := a.(clienttesting.CreateActionImpl)
		if ca.GetSubresource() != "repave" {
			return false, nil, nil
		}
		hw := ca.Name
		isKnown := false
		for _, k := range known {
			isKnown = isKnown || k == hw
		}
		if !isKnown {
			return true, nil, apierrors.NewNotFound(v1alpha1.Resource("hardwares"), hw)
		}
		req := ca.GetObject().(*v1alpha1.RepaveRequest).DeepCopy()
		ref := &v1alpha1.JobReference{Name: fmt.Sprintf("%s-%s-1a2b3c", hw, req.Spec.TemplateRef.Name)}
		if len(ca.CreateOptions.DryRun) == 0 {
			ref.UID = types.UID("uid-" + hw)
		}
		req.Status.Job = ref
		return true, req, nil
	})
}

func TestRepaveNamed(t *testing.T) {
	h := newHarness(t, false)
	h.answerRepaves("server-001", "server-002")
	if err := h.run("repave", "server-001", "server-002", "-n", "dc-west", "--template", "os-2"); err != nil {
		t.Fatal(err)
	}
	want := "job.stargate.io/server-001-os-2-1a2b3c created\njob.stargate.io/server-002-os-2-1a2b3c created\n"
	if got := h.out.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	creates := h.actions("create", "hardwares")
	if len(creates) != 2 {
		t.Fatalf("%d repaves sent, want 2", len(creates))
	}
	for i, hw := range []string{"server-001", "server-002"} {
		ca := creates[i].(clienttesting.CreateActionImpl)
		req := ca.GetObject().(*v1alpha1.RepaveRequest)
		if ca.Name != hw || ca.GetNamespace() != "dc-west" || ca.GetSubresource() != "repave" ||
			req.Spec.TemplateRef.Name != "os-2" || len(ca.CreateOptions.DryRun) != 0 {
			t.Errorf("repave %d: %s/%s/%s template %q dryRun %v", i, ca.GetNamespace(), ca.Name, ca.GetSubresource(), req.Spec.TemplateRef.Name, ca.CreateOptions.DryRun)
		}
	}
}

func TestRepaveNamedOutputs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"dry run", []string{"--dry-run=server"}, []string{"job.stargate.io/server-001-os-2-1a2b3c created (server dry run)\n"}},
		{"dry run without value", []string{"--dry-run"}, []string{"job.stargate.io/server-001-os-2-1a2b3c created (server dry run)\n"}},
		{"name", []string{"-o", "name"}, []string{"job.stargate.io/server-001-os-2-1a2b3c\n"}},
		{"yaml", []string{"-o", "yaml"}, []string{"kind: RepaveRequest", "apiVersion: stargate.io/v1alpha1", "name: server-001-os-2-1a2b3c", "uid: uid-server-001"}},
		{"json", []string{"-o", "json", "--dry-run=server"}, []string{`"kind": "RepaveRequest"`, `"name": "server-001-os-2-1a2b3c"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, false)
			h.answerRepaves("server-001")
			if err := h.run(append([]string{"repave", "server-001", "-n", "dc-west", "--template", "os-2"}, tc.args...)...); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(h.out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, h.out)
				}
			}
			dryRun := strings.Contains(strings.Join(tc.args, " "), "--dry-run")
			ca := h.actions("create", "hardwares")[0].(clienttesting.CreateActionImpl)
			if got := ca.CreateOptions.DryRun; dryRun != reflect.DeepEqual(got, []string{metav1.DryRunAll}) {
				t.Errorf("dryRun sent %v", got)
			}
		})
	}
}

func TestRepaveNamedPartialFailure(t *testing.T) {
	h := newHarness(t, false)
	h.answerRepaves("server-002")
	err := h.run("repave", "server-001", "server-002", "-n", "dc-west", "--template", "os-2")
	if err == nil || !strings.Contains(err.Error(), `repave hardware.stargate.io/server-001 in dc-west: hardwares.stargate.io "server-001" not found`) {
		t.Fatalf("got %v", err)
	}
	if got := h.out.String(); got != "job.stargate.io/server-002-os-2-1a2b3c created\n" {
		t.Errorf("the other server's Job: %q", got)
	}
}

func TestRepaveNamedNoJobInAnswer(t *testing.T) {
	h := newHarness(t, false)
	h.client.PrependReactor("create", "hardwares", func(a clienttesting.Action) (bool, runtime.Object, error) {
		return true, &v1alpha1.RepaveRequest{}, nil // a server that answers a Job decodes so
	})
	if err := h.run("repave", "server-001", "-n", "dc-west", "--template", "os-2"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.err.String(), "without naming its Job (status.job): kubectl get jobs.stargate.io -n dc-west") || h.out.Len() != 0 {
		t.Errorf("out %q err %q", h.out, h.err)
	}
}

func job(name string, phase v1alpha1.JobPhase, reason, message string) *v1alpha1.Job {
	return &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "dc-west"},
		Status:     v1alpha1.JobStatus{Phase: phase, Reason: reason, Message: message},
	}
}

func TestRepaveNamedWait(t *testing.T) {
	h := newHarness(t, false,
		job("server-001-os-2-1a2b3c", v1alpha1.JobRunning, "", ""),
		job("server-002-os-2-1a2b3c", v1alpha1.JobFailed, "DatacenterError", "the BMC did not answer"))
	h.answerRepaves("server-001", "server-002")
	h.script("jobs", modified(job("server-001-os-2-1a2b3c", v1alpha1.JobSucceeded, "", ""))...)
	err := h.run("repave", "server-001", "server-002", "-n", "dc-west", "--template", "os-2", "--wait")
	if err == nil || !strings.Contains(err.Error(), "1 of 2 repave Jobs failed") {
		t.Fatalf("got %v, want one failed", err)
	}
	want := "job.stargate.io/server-001-os-2-1a2b3c created\n" +
		"job.stargate.io/server-002-os-2-1a2b3c created\n" +
		"job.stargate.io/server-001-os-2-1a2b3c succeeded\n" +
		"job.stargate.io/server-002-os-2-1a2b3c failed: DatacenterError: the BMC did not answer\n"
	if got := h.out.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRepaveNamedWaitTimeout(t *testing.T) {
	h := newHarness(t, false, job("server-001-os-2-1a2b3c", v1alpha1.JobRunning, "", ""))
	h.answerRepaves("server-001")
	err := h.run("repave", "server-001", "-n", "dc-west", "--template", "os-2", "--wait", "--timeout=200ms")
	if err == nil || !strings.Contains(err.Error(), "timed out after 200ms waiting for job.stargate.io/server-001-os-2-1a2b3c in dc-west") {
		t.Fatalf("got %v", err)
	}
}

// nameCampaigns gives created Campaigns a name from their generateName, as
// the server does, and answers a dry run with plan.
func (h *harness) nameCampaigns(plan *v1alpha1.CampaignStatus) {
	h.client.PrependReactor("create", "campaigns", func(a clienttesting.Action) (bool, runtime.Object, error) {
		ca := a.(clienttesting.CreateActionImpl)
		c := ca.GetObject().(*v1alpha1.Campaign)
		if c.Name == "" {
			c.Name = c.GenerateName + "x7k2p"
		}
		if len(ca.CreateOptions.DryRun) > 0 && plan != nil {
			c = c.DeepCopy()
			c.Status = *plan
			return true, c, nil
		}
		return false, nil, nil // the tracker stores it
	})
}

func datacenter(name string, labels map[string]string) *v1alpha1.Datacenter {
	return &v1alpha1.Datacenter{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func hardware(ns, name string, labels map[string]string) *v1alpha1.Hardware {
	return &v1alpha1.Hardware{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
}

// pool is the Hardware server-001 in dc-west, in pool training-a.
var pool = hardware("dc-west", "server-001", map[string]string{"stargate.io/pool": "training-a", "a": "b"})

func TestRepaveSelectorCreatesCampaign(t *testing.T) {
	labelled := datacenter("dc-west", map[string]string{DatacenterNameLabel: "dc-west", "region": "eu"})
	hw := &metav1.LabelSelector{MatchLabels: map[string]string{"stargate.io/pool": "training-a"}}
	for _, tc := range []struct {
		name string
		args []string
		dcs  *metav1.LabelSelector
	}{
		{"namespace", []string{"-n", "dc-west"}, &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: DatacenterNameLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"dc-west"}}}}},
		{"all", []string{"-A"}, nil},
		{"datacenters", []string{"--datacenters", "region=eu,tier!=lab"}, &metav1.LabelSelector{
			MatchLabels:      map[string]string{"region": "eu"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"lab"}}}}},
		{"datacenters, set-based", []string{"--datacenters", "region in (eu,us),!lab"}, &metav1.LabelSelector{
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "lab", Operator: metav1.LabelSelectorOpDoesNotExist},
				{Key: "region", Operator: metav1.LabelSelectorOpIn, Values: []string{"eu", "us"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, false, labelled, pool)
			h.nameCampaigns(nil)
			args := append([]string{"repave", "-l", "stargate.io/pool=training-a", "--template", "os-2"}, tc.args...)
			if err := h.run(args...); err != nil {
				t.Fatal(err)
			}
			if got := h.out.String(); got != "campaign.stargate.io/repave-x7k2p created\n" {
				t.Errorf("printed %q", got)
			}
			creates := h.actions("create", "campaigns")
			if len(creates) != 1 {
				t.Fatalf("%d Campaigns created", len(creates))
			}
			c := creates[0].(clienttesting.CreateActionImpl).GetObject().(*v1alpha1.Campaign)
			want := v1alpha1.CampaignSpec{
				Operation:          v1alpha1.OperationRepave,
				TemplateRef:        &v1alpha1.LocalObjectReference{Name: "os-2"},
				HardwareSelector:   hw,
				DatacenterSelector: tc.dcs,
			}
			if c.GenerateName != "repave-" || !apiequality.Semantic.DeepEqual(c.Spec, want) {
				t.Errorf("created %s with\n%+v\nwant\n%+v", c.GenerateName, c.Spec, want)
			}
		})
	}
}

func TestRepaveSelectorDatacenterCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		err  string
	}{
		{"no such datacenter", nil, "there is no datacenter.stargate.io/default: -n names the datacenter"},
		{"unlabelled datacenter", []runtime.Object{datacenter("default", nil)},
			"datacenter.stargate.io/default lacks the label stargate.io/datacenter=default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, false, tc.objs...)
			err := h.run("repave", "-l", "a=b", "--template", "os-2")
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
			if n := len(h.actions("create", "campaigns")); n != 0 {
				t.Errorf("%d Campaigns created", n)
			}
		})
	}
}

func TestRepaveSelectorSelectsNoHardware(t *testing.T) {
	west := datacenter("dc-west", map[string]string{DatacenterNameLabel: "dc-west", "region": "eu"})
	east := datacenter("dc-east", map[string]string{DatacenterNameLabel: "dc-east", "region": "us"})
	inEast := hardware("dc-east", "server-101", map[string]string{"stargate.io/pool": "training-b"})
	forbidden := func(h *harness) {
		h.client.PrependReactor("list", "hardwares", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(v1alpha1.Resource("hardwares"), "", fmt.Errorf("no"))
		})
	}
	for _, tc := range []struct {
		name    string
		args    []string
		react   func(*harness)
		err     string // "" when the Campaign is created
		warning string
	}{
		{name: "a typo, in -n's datacenter", args: []string{"-l", "stargate.io/pool=trainng-a", "-n", "dc-west"},
			err: `-l "stargate.io/pool=trainng-a" selects no Hardware in datacenter dc-west (namespace dc-west): the Campaign would have no server to repave, so none was created (kubectl get hardware -n dc-west -l "stargate.io/pool=trainng-a" lists what it selects)`},
		{name: "a typo, in a server dry run", args: []string{"-l", "stargate.io/pool=trainng-a", "-n", "dc-west", "--dry-run=server"},
			err: `-l "stargate.io/pool=trainng-a" selects no Hardware in datacenter dc-west`},
		{name: "servers in another datacenter than -n's", args: []string{"-l", "stargate.io/pool=training-b", "-n", "dc-west"},
			err: `-l "stargate.io/pool=training-b" selects no Hardware in datacenter dc-west`},
		{name: "a typo, everywhere", args: []string{"-l", "stargate.io/pool=trainng-a", "-A"},
			err: `-l "stargate.io/pool=trainng-a" selects no Hardware in any namespace (-A)`},
		{name: "servers in a datacenter --datacenters does not select", args: []string{"-l", "stargate.io/pool=training-b", "--datacenters", "region=eu"},
			err: `-l "stargate.io/pool=training-b" selects no Hardware in the datacenters --datacenters "region=eu" selects (dc-west)`},
		{name: "--datacenters selects none", args: []string{"-l", "stargate.io/pool=training-a", "--datacenters", "region=mars"},
			err: `--datacenters "region=mars" selects no Datacenter: the Campaign would have no server to repave`},
		{name: "servers in one of the selected datacenters", args: []string{"-l", "stargate.io/pool=training-b", "--datacenters", "region in (eu,us)"}},
		{name: "servers everywhere", args: []string{"-l", "stargate.io/pool", "-A"}},
		{name: "not allowed to list Hardware", args: []string{"-l", "stargate.io/pool=trainng-a", "-n", "dc-west"}, react: forbidden,
			warning: `Warning: not allowed to list Hardware, so not checking that -l "stargate.io/pool=trainng-a" selects any` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, false, west, east, pool, inEast)
			h.nameCampaigns(&v1alpha1.CampaignStatus{})
			if tc.react != nil {
				tc.react(h)
			}
			err := h.run(append([]string{"repave", "--template", "os-2"}, tc.args...)...)
			creates := len(h.actions("create", "campaigns"))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error: %v", err)
			case tc.err == "" && creates != 1:
				t.Fatalf("%d Campaigns created, want 1", creates)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want one with\n%s", err, tc.err)
			case tc.err != "" && creates != 0:
				t.Fatalf("%d Campaigns created, want none", creates)
			}
			if got := h.err.String(); got != tc.warning {
				t.Errorf("warned %q, want %q", got, tc.warning)
			}
			for _, a := range h.actions("list", "hardwares") {
				if l := a.(clienttesting.ListActionImpl).GetListOptions(); l.Limit != 1 {
					t.Errorf("listed Hardware with limit %d, want 1 (one is enough)", l.Limit)
				}
			}
		})
	}
}

func TestRepaveSelectorNamespaceAndDatacenters(t *testing.T) {
	west := datacenter("dc-west", map[string]string{DatacenterNameLabel: "dc-west", "region": "eu"})
	for _, tc := range []struct {
		name string
		args []string
		dcs  *metav1.LabelSelector
		err  string
	}{
		{name: "-n with --datacenters", args: []string{"-n", "dc-west", "--datacenters", "region=eu"},
			err: "-n/--namespace and --datacenters cannot be used together"},
		{name: "--namespace with --datacenters", args: []string{"--namespace=dc-west", "--datacenters", "region=eu"},
			err: "-n/--namespace and --datacenters cannot be used together"},
		{name: "-A wins over -n", args: []string{"-n", "dc-west", "-A"}},
		{name: "--datacenters with the kubeconfig's namespace", args: []string{"--datacenters", "region=eu"},
			dcs: &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, false, west, pool)
			h.nameCampaigns(nil)
			err := h.run(append([]string{"repave", "-l", "stargate.io/pool=training-a", "--template", "os-2"}, tc.args...)...)
			creates := h.actions("create", "campaigns")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one with %q", err, tc.err)
				}
				if n := len(h.client.Actions()); n != 0 {
					t.Errorf("%d requests sent, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(creates) != 1 {
				t.Fatalf("%d Campaigns created", len(creates))
			}
			c := creates[0].(clienttesting.CreateActionImpl).GetObject().(*v1alpha1.Campaign)
			if !apiequality.Semantic.DeepEqual(c.Spec.DatacenterSelector, tc.dcs) {
				t.Errorf("created with datacenterSelector %+v, want %+v", c.Spec.DatacenterSelector, tc.dcs)
			}
		})
	}
}

func TestRepaveSelectorDryRunPlan(t *testing.T) {
	c := campaign("plan")
	plan := &v1alpha1.CampaignStatus{Counts: v1alpha1.CampaignCounts{Targets: 5000, Skipped: 120}, Plan: c.Status.Plan}
	h := newHarness(t, false, pool)
	h.nameCampaigns(plan)
	if err := h.run("repave", "-l", "stargate.io/pool=training-a", "-A", "--template", "os-2", "--dry-run=server"); err != nil {
		t.Fatal(err)
	}
	golden(t, "repave-dry-run.txt", h.out.String())
	ca := h.actions("create", "campaigns")[0].(clienttesting.CreateActionImpl)
	if !reflect.DeepEqual(ca.CreateOptions.DryRun, []string{metav1.DryRunAll}) {
		t.Errorf("dryRun sent %v", ca.CreateOptions.DryRun)
	}
}

func TestRepaveSelectorWait(t *testing.T) {
	h := newHarness(t, false, pool)
	h.nameCampaigns(nil)
	done := progressed("11", 1, 4998, 2, withPhase(v1alpha1.CampaignComplete))
	done.Name = "repave-x7k2p"
	h.script("campaigns", modified(done)...)
	if err := h.run("repave", "-l", "a=b", "-A", "--template", "os-2", "--wait"); err != nil {
		t.Fatal(err)
	}
	want := "campaign.stargate.io/repave-x7k2p created\n" +
		`Waiting for campaign "repave-x7k2p" to start...` + "\n" +
		`campaign "repave-x7k2p" successfully completed` + "\n"
	if got := h.out.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRepaveArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"server-001"}, "--template is required"},
		{[]string{"--template", "os-2"}, "name the servers to repave, or select them with -l"},
		{[]string{"server-001", "-l", "a=b", "--template", "os-2"}, "not both"},
		{[]string{"server-001", "-A", "--template", "os-2"}, "-A and --datacenters go with -l"},
		{[]string{"-l", "a=b", "-A", "--datacenters", "x=y", "--template", "os-2"}, "exclude each other"},
		{[]string{"server-001", "--template", "os-2", "--dry-run=client"}, `--dry-run must be "server" or "none"`},
		{[]string{"server-001", "--template", "os-2", "--dry-run", "--wait"}, "--wait waits for what a dry run does not do"},
		{[]string{"server-001", "--template", "os-2", "-o", "wide"}, "unable to match a printer"},
		{[]string{"-l", "a==b=", "-A", "--template", "os-2"}, `-l "a==b="`},
		{[]string{"-l", "size>3", "-A", "--template", "os-2"}, "a Campaign's selectors have no such operator"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			h := newHarness(t, false)
			err := h.run(append([]string{"repave"}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want %q", err, tc.err)
			}
			if n := len(h.client.Actions()); n != 0 {
				t.Errorf("%d requests sent", n)
			}
		})
	}
}
