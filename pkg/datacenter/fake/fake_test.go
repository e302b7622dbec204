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
