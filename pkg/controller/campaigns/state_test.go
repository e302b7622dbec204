package campaigns

import (
	"fmt"
	"testing"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// ledgerOf builds records: dcs datacenters of n members each, in waves of size wave.
func ledgerOf(dcs, n, wave int) map[string]record {
	recs := map[string]record{}
	order := 0
	for i := range n {
		for d := range dcs {
			recs[fmt.Sprintf("dc-%d/hw-%03d", d, i)] = record{Wave: int32(order/wave) + 1, Domain: fmt.Sprintf("rack-%d", i%2), State: statePending, Order: order}
			order++
		}
	}
	return recs
}

func TestProgressCountsEveryMove(t *testing.T) {
	p := newProgress("uid", ledgerOf(2, 5, 4), map[string]int32{"dc-0": 2})
	if p.waves != 3 || len(p.members) != 10 || p.scopes.Total != 10 || p.scopes.DC["dc-0"] != 5 {
		t.Fatalf("waves %d, members %d, scopes %+v", p.waves, len(p.members), p.scopes)
	}
	if got := p.total(); got.Targets != 12 || got.Skipped != 2 || got.Pending != 10 {
		t.Errorf("total %+v", got)
	}
	m := p.byKey["dc-0/hw-000"]
	p.set(m, stateStarted, "job-a", "")
	if p.started != 1 || p.startedInDC["dc-0"] != 1 || len(p.inFlight) != 1 || p.highestWave != 1 {
		t.Errorf("after start: started %d, in dc %d, in flight %d, highest wave %d", p.started, p.startedInDC["dc-0"], len(p.inFlight), p.highestWave)
	}
	p.set(m, stateFailed, "job-a", "DatacenterJobFailed")
	if p.started != 0 || len(p.inFlight) != 0 || p.failed != 1 || p.failedDC["dc-0"] != 1 || p.failedWave[1] != 1 {
		t.Errorf("after failure: started %d, failed %d/%d/%d", p.started, p.failed, p.failedDC["dc-0"], p.failedWave[1])
	}
	if len(p.failures) != 1 || p.failures[0].Job != "job-a" || p.failures[0].Reason != "DatacenterJobFailed" {
		t.Errorf("failures %+v", p.failures)
	}
	if got := p.counts["dc-0"]; got.Failed != 1 || got.Pending != 4 || got.Targets != 7 || got.Running != 0 {
		t.Errorf("dc-0 counts %+v", got)
	}
}

func TestProgressWavesAndCursor(t *testing.T) {
	p := newProgress("uid", ledgerOf(2, 4, 4), nil) // waves of 4: 2 per datacenter
	var first []string
	p.pendingIn("dc-1", 1, func(m *member) bool { first = append(first, m.Name); return true })
	if fmt.Sprint(first) != "[hw-000 hw-001]" {
		t.Errorf("dc-1's wave 1: %v", first)
	}
	for _, m := range p.byDC["dc-1"][:2] {
		p.set(m, stateSucceeded, "j", "")
	}
	if p.waveDone(1, nil) {
		t.Error("wave 1 done with dc-0's share pending")
	}
	if !p.waveDone(1, map[string]bool{"dc-0": true}) {
		t.Error("wave 1 not done with dc-0 exempt")
	}
	var next []string
	p.pendingIn("dc-1", 2, func(m *member) bool { next = append(next, m.Name); return len(next) < 1 })
	if fmt.Sprint(next) != "[hw-002]" || p.cursor["dc-1"] != 2 {
		t.Errorf("dc-1 up to wave 2: %v, cursor %d", next, p.cursor["dc-1"])
	}
	for _, m := range p.byDC["dc-0"][:2] {
		p.set(m, stateCancelled, "", ReasonCampaignCancelled)
	}
	if !p.waveDone(1, nil) {
		t.Error("wave 1 not done once every member is final")
	}
	if got := p.total(); got.Cancelled != 2 || got.Succeeded != 2 || got.Pending != 4 {
		t.Errorf("total %+v", got)
	}
}

func TestJobNamesAreStableAndDistinct(t *testing.T) {
	camp := &v1alpha1.Campaign{}
	camp.Name, camp.UID = "os-2", "uid-1"
	a := &member{}
	a.Datacenter, a.Name = "dc-west", "server-001"
	if jobName(camp, a) != jobName(camp, a) {
		t.Error("not stable")
	}
	again := camp.DeepCopy()
	again.UID = "uid-2"
	if jobName(camp, a) == jobName(again, a) {
		t.Error("a Campaign recreated under the same name reuses its predecessor's Job names")
	}
	long := &member{}
	long.Datacenter, long.Name = "dc-west", string(make([]byte, 250))
	for i := range []byte(long.Name) {
		long.Name = long.Name[:i] + "a" + long.Name[i+1:]
	}
	if n := len(jobName(camp, long)); n > 253 {
		t.Errorf("name of %d characters", n)
	}
}
