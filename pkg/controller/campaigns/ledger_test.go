package campaigns

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"stargate.io/stargate/pkg/embeddedetcd"
)

// A ledger write is made under the driver's fence: once the election key it
// was won under is gone (or recreated by a successor), the write fails and
// changes nothing.
func TestLedgerWritesAreFenced(t *testing.T) {
	etcd, err := embeddedetcd.Start(t.TempDir(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(etcd.Close)
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	ctx := context.Background()
	put, err := client.Put(ctx, "/election/campaign.c/1", "replica-a")
	if err != nil {
		t.Fatal(err)
	}
	won := put.Header.Revision
	l := newLedger(client, "/t", func(string) ([]clientv3.Cmp, error) {
		return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision("/election/campaign.c/1"), "=", won)}, nil
	})
	if err := l.write(ctx, "c", "uid", map[string]record{"dc-a/hw-1": {State: stateStarted, Job: "j"}}); err != nil {
		t.Fatalf("write while holding the key: %v", err)
	}
	// The key lapses and a successor wins it again: a new create revision.
	if _, err := client.Delete(ctx, "/election/campaign.c/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Put(ctx, "/election/campaign.c/1", "replica-b"); err != nil {
		t.Fatal(err)
	}
	err = l.write(ctx, "c", "uid", map[string]record{"dc-a/hw-1": {State: statePending}})
	if !errors.Is(err, errFenced) {
		t.Fatalf("write after losing the key: %v, want errFenced", err)
	}
	if err := l.drop(ctx, "c", "uid"); !errors.Is(err, errFenced) {
		t.Fatalf("drop after losing the key: %v, want errFenced", err)
	}
	resp, err := client.Get(ctx, l.memberKey("uid", "dc-a", "hw-1"))
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) == "" {
		t.Fatalf("the record: %v %v", resp, err)
	}
	if got := string(resp.Kvs[0].Value); got != `{"w":0,"s":"started","j":"j","o":0}` {
		t.Errorf("the fenced write changed the record: %s", got)
	}
}
