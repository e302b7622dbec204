package mockdc

import (
	"encoding/json"
	"fmt"
	"time"
)

// Faults are the misbehaviours a mock datacenter can be told to show. Rates
// are fractions of requests (0 to 1). They apply to the datacenter API
// (/v1/... and /healthz), never to /debug or /metrics, so a test can always
// switch them off again.
type Faults struct {
	// ErrorRate answers this fraction of requests 500 without acting on them.
	ErrorRate float64 `json:"errorRate,omitempty"`
	// Latency delays every request.
	Latency Duration `json:"latency,omitempty"`
	// TimeoutRate accepts this fraction of requests and never answers them.
	TimeoutRate float64 `json:"timeoutRate,omitempty"`
	// DropAfterAcceptRate starts this fraction of job submissions but closes
	// the connection instead of answering: the client cannot know it started.
	DropAfterAcceptRate float64 `json:"dropAfterAcceptRate,omitempty"`
	// JobFailureRate makes this fraction of jobs end failed.
	JobFailureRate float64 `json:"jobFailureRate,omitempty"`
	// Outage answers every request 503: the datacenter is down.
	Outage bool `json:"outage,omitempty"`
	// LoseFirstAnswer, when set, makes chosen submissions end in an unknown
	// outcome followed by a streak of errors: see LoseFirstAnswer.
	LoseFirstAnswer *LoseFirstAnswer `json:"loseFirstAnswer,omitempty"`
}

// LoseFirstAnswer is a scripted fault: the first submission under a new
// idempotency key is accepted and its job started, but its answer is held
// for Hold and then the connection is dropped (the client cannot know the
// job started); the next FailResubmits submissions under that key are
// answered 500 without being acted on; later ones are answered as usual (a
// replay of the job that runs). GET /v1/jobs?idempotencyKey= is not
// affected: the datacenter can always be asked what runs under a key.
//
// With MACs empty it strikes every new key; otherwise it strikes the first
// new key submitted for each listed machine, once per machine, so a later
// job on the same machine goes through normally. Setting the faults again
// (POST /debug/faults) starts afresh: streaks under way end and every
// listed machine can be struck again. What was struck is not kept in the
// state file.
type LoseFirstAnswer struct {
	// MACs are the machines (any spelling) struck once each; empty: every new key.
	MACs []string `json:"macs,omitempty"`
	// FailResubmits is how many submissions under a struck key are answered
	// 500 after the lost one. The datacenter client retries within one call,
	// so a streak that outlasts a Job's backoffLimit needs several per attempt.
	FailResubmits int `json:"failResubmits,omitempty"`
	// Hold is how long the lost answer is held before the connection is dropped.
	Hold Duration `json:"hold,omitempty"`
	// JobDuration, when set, is how long a struck job runs instead of its
	// operation's usual time, so it is still running when the client gives up.
	JobDuration Duration `json:"jobDuration,omitempty"`
}

// clone copies f, MACs normalised, so the caller's slices are not shared.
func (f Faults) clone() Faults {
	if f.LoseFirstAnswer != nil {
		l := *f.LoseFirstAnswer
		l.MACs = make([]string, 0, len(f.LoseFirstAnswer.MACs))
		for _, mac := range f.LoseFirstAnswer.MACs {
			if normalized, ok := normalizeMAC(mac); ok {
				mac = normalized
			}
			l.MACs = append(l.MACs, mac)
		}
		f.LoseFirstAnswer = &l
	}
	return f
}

// maxFailResubmits bounds a scripted streak.
const maxFailResubmits = 1_000_000

func (f Faults) validate() error {
	for name, rate := range map[string]float64{"errorRate": f.ErrorRate, "timeoutRate": f.TimeoutRate,
		"dropAfterAcceptRate": f.DropAfterAcceptRate, "jobFailureRate": f.JobFailureRate} {
		if rate < 0 || rate > 1 {
			return fmt.Errorf("%s must be between 0 and 1, got %v", name, rate)
		}
	}
	if f.Latency.Duration < 0 || f.Latency.Duration > 5*time.Minute {
		return fmt.Errorf("latency must be between 0 and 5m, got %s", f.Latency.Duration)
	}
	if l := f.LoseFirstAnswer; l != nil {
		if l.FailResubmits < 0 || l.FailResubmits > maxFailResubmits {
			return fmt.Errorf("loseFirstAnswer.failResubmits must be between 0 and %d, got %d", maxFailResubmits, l.FailResubmits)
		}
		if l.Hold.Duration < 0 || l.Hold.Duration > maxHang {
			return fmt.Errorf("loseFirstAnswer.hold must be between 0 and %s, got %s", maxHang, l.Hold.Duration)
		}
		if l.JobDuration.Duration < 0 || l.JobDuration.Duration > time.Hour {
			return fmt.Errorf("loseFirstAnswer.jobDuration must be between 0 and 1h, got %s", l.JobDuration.Duration)
		}
		for i, mac := range l.MACs {
			if _, ok := normalizeMAC(mac); !ok {
				return fmt.Errorf("loseFirstAnswer.macs[%d]: %q is not a MAC address", i, mac)
			}
		}
	}
	return nil
}

// Duration is a time.Duration written in JSON as a string such as "250ms".
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a string such as "250ms", or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("a duration is a string such as \"250ms\"")
		}
		d.Duration = time.Duration(n)
		return nil
	}
	parsed, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = parsed
	return nil
}
