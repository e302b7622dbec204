package sharding

import (
	"fmt"
	"testing"
	"time"
)

func testNamespaces(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("dc-%04d", i)
	}
	return out
}

func TestOwnerSpreadsEvenly(t *testing.T) {
	members := []string{"stargate-0", "stargate-1", "stargate-2"}
	namespaces := testNamespaces(3000)
	count := map[string]int{}
	for _, ns := range namespaces {
		count[owner(ns, members)]++
	}
	for _, m := range members {
		if c := count[m]; c < 900 || c > 1100 {
			t.Errorf("%s owns %d of 3000 namespaces, want about 1000: %v", m, c, count)
		}
	}
	if got := owner("dc-west", nil); got != "" {
		t.Errorf("owner with no members = %q, want \"\"", got)
	}
}

func TestOwnerMovesOnlyWhatItMust(t *testing.T) {
	namespaces := testNamespaces(3000)
	three := []string{"a", "b", "c"}
	before := map[string]string{}
	for _, ns := range namespaces {
		before[ns] = owner(ns, three)
	}

	t.Run("removing a member moves only its namespaces", func(t *testing.T) {
		for _, ns := range namespaces {
			after := owner(ns, []string{"a", "c"})
			if before[ns] != "b" && after != before[ns] {
				t.Fatalf("%s moved from %s to %s when b left", ns, before[ns], after)
			}
		}
	})
	t.Run("adding a member moves about 1/N, all to it", func(t *testing.T) {
		moved := 0
		for _, ns := range namespaces {
			after := owner(ns, []string{"a", "b", "c", "d"})
			if after != before[ns] {
				if after != "d" {
					t.Fatalf("%s moved from %s to %s when d joined", ns, before[ns], after)
				}
				moved++
			}
		}
		if moved < 650 || moved > 850 {
			t.Errorf("adding a 4th member moved %d of 3000 namespaces, want about 750", moved)
		}
	})
	t.Run("the order of members does not matter", func(t *testing.T) {
		for _, ns := range namespaces[:100] {
			if got := owner(ns, []string{"c", "a", "b"}); got != before[ns] {
				t.Fatalf("%s: owner %s with members reordered, %s before", ns, got, before[ns])
			}
		}
	})
}

func TestSettlerWaitsForQuietButNotForever(t *testing.T) {
	d := 60 * time.Millisecond
	s := newSettler(d)
	defer s.timer.Stop()
	<-s.timer.C
	s.fired()

	// Changes every d/3 keep postponing it, up to maxSettleFactor×d after the first.
	start := time.Now()
	s.changed()
	tick := time.NewTicker(d / 3)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			s.changed()
			continue
		case <-s.timer.C:
		}
		break
	}
	s.fired()
	if waited := time.Since(start); waited < 2*d || waited > maxSettleFactor*d+d {
		t.Errorf("under constant churn the settler fired after %s, want between %s and about %s", waited, 2*d, maxSettleFactor*d)
	}
}
