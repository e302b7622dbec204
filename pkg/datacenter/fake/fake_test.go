package fake

import (
	"context"
	"strings"
	"testing"

	"stargate.io/stargate/pkg/datacenter"
)

func TestFakeBehavesLikeTheContract(t *testing.T) {
	ctx := context.Background()
	c := New()
	req := datacenter.JobRequest{Operation: datacenter.OperationReboot, Machine: datacenter.Machine{MAC: "aa:bb:cc:dd:ee:01"}}

	c.FailNext(MethodSubmit, Transient())
	if _, err := c.Submit(ctx, "k", req); !datacenter.IsTransient(err) {
		t.Fatalf("queued failure: %v", err)
	}
	j1, err := c.Submit(ctx, "k", req)
	if err != nil {
		t.Fatal(err)
	}
	j2, _ := c.Submit(ctx, "k", req)
	if j1.ID != j2.ID || c.Executions("k") != 1 || c.Calls(MethodSubmit) != 3 {
		t.Errorf("idempotency: %s %s executions=%d calls=%d", j1.ID, j2.ID, c.Executions("k"), c.Calls(MethodSubmit))
	}
	if j, err := c.FindJob(ctx, "k"); err != nil || j.ID != j1.ID {
		t.Errorf("find by key: %v %+v", err, j)
	}
	if _, err := c.FindJob(ctx, "other"); !datacenter.IsNotFound(err) {
		t.Errorf("find by an unused key: %v", err)
	}
	if err := c.Finish(j1.ID, datacenter.JobSucceeded, ""); err != nil {
		t.Fatal(err)
	}
	if j, _ := c.GetJob(ctx, j1.ID); j.State != datacenter.JobSucceeded {
		t.Errorf("finished job reads %s", j.State)
	}
	if j, _ := c.Cancel(ctx, j1.ID); j.State != datacenter.JobSucceeded {
		t.Errorf("cancel changed a finished job to %s", j.State)
	}
	if _, err := c.GetJob(ctx, "nope"); !datacenter.IsNotFound(err) {
		t.Errorf("unknown job: %v", err)
	}
	if _, err := c.GetMachine(ctx, "ff:ff:ff:ff:ff:ff"); !datacenter.IsNotFound(err) {
		t.Errorf("unknown machine: %v", err)
	}
}

func TestCredentialsErrors(t *testing.T) {
	ctx := context.Background()
	c := New()
	c.FailNext(MethodSubmit, CredentialsMissing("/etc/stargate/datacenters/dc-west"), Unauthorized("/etc/stargate/datacenters/dc-west"))
	req := datacenter.JobRequest{Operation: datacenter.OperationReboot, Machine: datacenter.Machine{MAC: "aa:bb:cc:dd:ee:01"}}

	_, err := c.Submit(ctx, "k", req)
	if ce, ok := datacenter.IsCredentials(err); !ok || !ce.Missing || ce.File != "/etc/stargate/datacenters/dc-west" ||
		err.Error() != "credentials file /etc/stargate/datacenters/dc-west is missing: put the datacenter's bearer token there" {
		t.Errorf("missing: %v", err)
	}
	_, err = c.Submit(ctx, "k", req)
	if ce, ok := datacenter.IsCredentials(err); !ok || ce.Missing || !datacenter.IsUnauthorized(err) || datacenter.IsTransient(err) ||
		!strings.HasPrefix(err.Error(), "the datacenter refused the credentials in /etc/stargate/datacenters/dc-west (401 Unauthorized): ") {
		t.Errorf("refused: %v", err)
	}
	if c.Executions("k") != 0 {
		t.Error("a call that failed for credentials started a job")
	}
}

func TestFakeBatch(t *testing.T) {
	ctx := context.Background()
	c := New()
	head, err := c.Changes(ctx, "", 0)
	if err != nil || len(head.Jobs) != 0 || head.More || head.Cursor == "" {
		t.Fatalf("from now: %v %+v", err, head)
	}
	j1, _ := c.Submit(ctx, "k1", datacenter.JobRequest{Operation: datacenter.OperationReboot, Machine: datacenter.Machine{MAC: "aa:bb:cc:dd:ee:01"}})
	j2, _ := c.Submit(ctx, "k2", datacenter.JobRequest{Operation: datacenter.OperationReboot, Machine: datacenter.Machine{MAC: "aa:bb:cc:dd:ee:02"}})
	c.Submit(ctx, "k1", datacenter.JobRequest{Operation: datacenter.OperationReboot, Machine: datacenter.Machine{MAC: "aa:bb:cc:dd:ee:01"}}) // a replay: no change
	if err := c.Finish(j1.ID, datacenter.JobSucceeded, ""); err != nil {
		t.Fatal(err)
	}
	c.Cancel(ctx, j1.ID) // finished: no change
	if small, err := c.Changes(ctx, head.Cursor, 1); err != nil || len(small.Jobs) != 1 || small.Jobs[0].ID != j1.ID || !small.More {
		t.Fatalf("a page of one: %v %+v, want job %s and more", err, small, j1.ID)
	}
	page, err := c.Changes(ctx, head.Cursor, 2)
	if err != nil || len(page.Jobs) != 2 || page.Jobs[0].ID != j2.ID || page.Jobs[1].ID != j1.ID ||
		page.Jobs[1].State != datacenter.JobSucceeded || page.More {
		t.Fatalf("a page of two: %v %+v, want jobs %s, then %s (changed last) succeeded", err, page, j2.ID, j1.ID)
	}
	c.Cancel(ctx, j2.ID)
	if next, err := c.Changes(ctx, page.Cursor, 0); err != nil || len(next.Jobs) != 1 || next.Jobs[0].State != datacenter.JobCancelled {
		t.Errorf("after a cancel: %v %+v", err, next)
	}

	c.ExpireCursors()
	if _, err := c.Changes(ctx, page.Cursor, 0); !datacenter.IsCursorExpired(err) {
		t.Errorf("expired cursor: %v", err)
	}
	if _, err := c.Changes(ctx, "junk", 0); !datacenter.IsCursorExpired(err) {
		t.Errorf("junk cursor: %v", err)
	}

	found, err := c.LookupMachines(ctx, []string{"aa:bb:cc:dd:ee:01", "ff:ff:ff:ff:ff:ff"})
	if err != nil || len(found) != 1 || found["aa:bb:cc:dd:ee:01"] == nil {
		t.Errorf("lookup: %v %v", err, found)
	}
	c.FailNext(MethodLookupMachines, Transient())
	if _, err := c.LookupMachines(ctx, nil); !datacenter.IsTransient(err) {
		t.Errorf("queued failure: %v", err)
	}

	c.SetBatch(false)
	if _, err := c.Changes(ctx, "", 0); !datacenter.IsUnsupported(err) {
		t.Errorf("feed switched off: %v", err)
	}
	if _, err := c.LookupMachines(ctx, []string{"aa:bb:cc:dd:ee:01"}); !datacenter.IsUnsupported(err) {
		t.Errorf("lookup switched off: %v", err)
	}
	if c.Calls(MethodChanges) != 7 || c.Calls(MethodLookupMachines) != 3 {
		t.Errorf("calls: %d Changes, %d LookupMachines", c.Calls(MethodChanges), c.Calls(MethodLookupMachines))
	}
}
