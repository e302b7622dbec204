package campaigns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/types"
)

// The ledger is where a Campaign's members and what became of each are
// kept: in Stargate's etcd, next to the replicas' election keys, because a
// Campaign over 100,000 servers cannot hold them in its status (etcd's
// object size limit) and its Jobs are deleted after their TTL. It is
// written before each act: a member is recorded started before its Job is
// created, and its outcome before the Job's campaign finalizer is removed,
// so after a crash the ledger and the Jobs it names tell exactly what
// happened (ledger started + no Job: the create never happened, since the
// finalizer keeps every created Job until its outcome is in the ledger).
//
// Layout under <etcd-prefix>/campaigns/<campaign uid>/:
//
//	members/<datacenter>/<hardware>  a record (JSON)
//	sealed                            the plan's summary, written last: a
//	                                  ledger without it is a plan half
//	                                  written, redone from scratch
type ledger struct {
	client *clientv3.Client
	prefix string
	// fence is the condition of every write for a Campaign (see Options.Fence).
	fence func(key string) ([]clientv3.Cmp, error)
}

// errFenced: a ledger write was refused because this replica no longer
// holds the Campaign's election key.
var errFenced = errors.New("the campaign ledger was not written: this replica no longer drives the campaign (its election key is gone or was recreated)")

// Member states in the ledger.
const (
	statePending   = "pending"
	stateStarted   = "started"
	stateSucceeded = "succeeded"
	stateFailed    = "failed"
	stateCancelled = "cancelled"
)

// record is one member's entry. Short keys: a ledger holds one per member.
type record struct {
	Wave   int32  `json:"w"`
	Domain string `json:"d,omitempty"`
	State  string `json:"s"`
	Job    string `json:"j,omitempty"`
	Reason string `json:"r,omitempty"`
	// Order is the member's place in the plan's start order.
	Order int `json:"o"`
}

// seal summarizes a plan: written after every member.
type seal struct {
	Members int              `json:"members"`
	Skipped map[string]int32 `json:"skipped,omitempty"`
}

// maxOpsPerTxn stays under etcd's default --max-txn-ops (128).
const maxOpsPerTxn = 100

func newLedger(client *clientv3.Client, etcdPrefix string, fence func(string) ([]clientv3.Cmp, error)) *ledger {
	if fence == nil {
		fence = func(string) ([]clientv3.Cmp, error) { return nil, nil }
	}
	return &ledger{client: client, prefix: path.Join(etcdPrefix, "campaigns"), fence: fence}
}

// commit runs ops in one transaction under the Campaign's fence.
func (l *ledger) commit(ctx context.Context, campaign string, ops ...clientv3.Op) error {
	cmps, err := l.fence(DriverKey(campaign))
	if err != nil {
		return err
	}
	resp, err := l.client.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("writing the campaign ledger: %w", err)
	}
	if !resp.Succeeded {
		return errFenced
	}
	return nil
}

func (l *ledger) base(uid types.UID) string { return path.Join(l.prefix, string(uid)) + "/" }

func (l *ledger) memberKey(uid types.UID, dc, name string) string {
	return l.base(uid) + "members/" + dc + "/" + name
}

// write stores records (keyed datacenter/hardware) in transactions of at
// most maxOpsPerTxn puts.
func (l *ledger) write(ctx context.Context, campaign string, uid types.UID, recs map[string]record) error {
	ops := make([]clientv3.Op, 0, min(len(recs), maxOpsPerTxn))
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if err := l.commit(ctx, campaign, ops...); err != nil {
			return err
		}
		ops = ops[:0]
		return nil
	}
	for key, rec := range recs {
		dc, name, _ := strings.Cut(key, "/")
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(l.memberKey(uid, dc, name), string(data)))
		if len(ops) == maxOpsPerTxn {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// seal marks the plan complete.
func (l *ledger) seal(ctx context.Context, campaign string, uid types.UID, s seal) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return l.commit(ctx, campaign, clientv3.OpPut(l.base(uid)+"sealed", string(data)))
}

// load reads a Campaign's ledger: its seal (nil when the plan was never
// completed) and every member record keyed datacenter/hardware, page by page.
func (l *ledger) load(ctx context.Context, uid types.UID) (*seal, map[string]record, error) {
	resp, err := l.client.Get(ctx, l.base(uid)+"sealed")
	if err != nil {
		return nil, nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil, nil
	}
	s := &seal{}
	if err := json.Unmarshal(resp.Kvs[0].Value, s); err != nil {
		return nil, nil, fmt.Errorf("the campaign ledger's seal is unreadable: %w", err)
	}
	members := l.base(uid) + "members/"
	recs := make(map[string]record, s.Members)
	rev := resp.Header.Revision
	for from, end := members, clientv3.GetPrefixRangeEnd(members); ; {
		page, err := l.client.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(1000), clientv3.WithRev(rev))
		if err != nil {
			return nil, nil, err
		}
		for _, kv := range page.Kvs {
			var rec record
			if err := json.Unmarshal(kv.Value, &rec); err != nil {
				return nil, nil, fmt.Errorf("campaign ledger entry %s is unreadable: %w", kv.Key, err)
			}
			recs[strings.TrimPrefix(string(kv.Key), members)] = rec
		}
		if !page.More || len(page.Kvs) == 0 {
			break
		}
		from = string(page.Kvs[len(page.Kvs)-1].Key) + "\x00"
	}
	return s, recs, nil
}

// drop deletes a Campaign's ledger.
func (l *ledger) drop(ctx context.Context, campaign string, uid types.UID) error {
	return l.commit(ctx, campaign, clientv3.OpDelete(l.base(uid), clientv3.WithPrefix()))
}
