// A round trip over gRPC with Go code generated from protos/ by Debian's protoc-gen-go and
// protoc-gen-go-grpc, built against Debian's grpc-go, genproto and golang/protobuf 1.5 (see
// clients/README.md): create, get, list following next_cursor, update with if-match (and a stale
// one: ABORTED), delete, and a refused create whose google.rpc.BadRequest is decoded through
// errdetails.
//
// tests/e2e/test_generated_clients.py generates the client into a temporary GOPATH and runs this
// with `go test` against the real server. The environment names the server and the demo world:
// EXPERIMENTS_GRPC_TARGET (host:port), EXPERIMENTS_KEY (tokens.settings), EXPERIMENTS_ORG
// (organization_id), EXPERIMENTS_GOAL (goal_id), EXPERIMENTS_ROOMS (room_ids, comma separated).
package roundtrip

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	experimentsv5 "example.com/experiments/gen/go/experiments/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type world struct {
	client experimentsv5.ExperimentServiceClient
	ctx    context.Context
	org    string
	goal   string
	rooms  []string
}

func newExperiment(t *testing.T, w world, name string, percentages [2]int32) *experimentsv5.Experiment {
	treatment, err := structpb.NewStruct(map[string]interface{}{
		"name": "Rule-A", "actions": []interface{}{}, "priority": 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &experimentsv5.Experiment{
		IsDraft:  proto.Bool(false),
		Name:     proto.String(name),
		GoalId:   proto.String(w.goal),
		RoomIds:  w.rooms[:1],
		StartsAt: timestamppb.New(time.Date(2030, 5, 8, 13, 2, 35, 123000000, time.UTC)),
		Groups: []*experimentsv5.Group{
			{
				Name:       proto.String("A"),
				Percentage: proto.Int32(percentages[0]),
				GroupType:  structpb.NewStringValue("control"),
				Treatment:  treatment,
			},
			{
				Name:       proto.String("B"),
				Percentage: proto.Int32(percentages[1]),
				GroupType:  structpb.NewNullValue(),
			},
		},
	}
}

func create(t *testing.T, w world, name string) (*experimentsv5.Experiment, string) {
	var header metadata.MD
	created, err := w.client.CreateExperiment(w.ctx, &experimentsv5.CreateExperimentRequest{
		OrganizationId: w.org,
		Experiment:     newExperiment(t, w, name, [2]int32{90, 10}),
	}, grpc.Header(&header))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	etag := header.Get("etag")
	if len(etag) != 1 || etag[0] != fmt.Sprintf("%q", created.Etag) {
		t.Fatalf("create: etag metadata %v for etag %q", etag, created.Etag)
	}
	return created, etag[0]
}

func TestRoundTrip(t *testing.T) {
	connection, err := grpc.Dial(os.Getenv("EXPERIMENTS_GRPC_TARGET"), grpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer connection.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := world{
		client: experimentsv5.NewExperimentServiceClient(connection),
		ctx:    metadata.AppendToOutgoingContext(ctx, "authorization", "Token "+os.Getenv("EXPERIMENTS_KEY")),
		org:    os.Getenv("EXPERIMENTS_ORG"),
		goal:   os.Getenv("EXPERIMENTS_GOAL"),
		rooms:  strings.Split(os.Getenv("EXPERIMENTS_ROOMS"), ","),
	}

	experiment, etag := create(t, w, "Hello experiment")
	group := experiment.Groups[0]
	if group.GetGroupType().GetStringValue() != "control" || group.GetTreatment().GetFields()["priority"].GetNumberValue() != 3 {
		t.Fatalf("create: first group %v", group)
	}
	if _, null := experiment.Groups[1].GetGroupType().GetKind().(*structpb.Value_NullValue); !null {
		t.Fatalf("create: second group's type %v, want null", experiment.Groups[1].GetGroupType())
	}
	t.Log("create: OK with an etag")

	got, err := w.client.GetExperiment(w.ctx, &experimentsv5.GetExperimentRequest{
		OrganizationId: w.org, ExperimentId: experiment.Id,
	})
	if err != nil || !proto.Equal(got, experiment) {
		t.Fatalf("get: %v, %v", err, got)
	}
	t.Log("get: the same experiment")

	var others []string
	for i := 0; i < 3; i++ {
		other, _ := create(t, w, fmt.Sprintf("Listed %d", i))
		others = append([]string{other.Id}, others...)
	}
	var listed []string
	cursor := ""
	for {
		page, err := w.client.ListExperiments(w.ctx, &experimentsv5.ListExperimentsRequest{
			OrganizationId: w.org, PageSize: 2, Cursor: cursor,
		})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		for _, e := range page.Results {
			listed = append(listed, e.Id)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	want := append(others, experiment.Id)
	if len(listed) < len(want) || strings.Join(listed[:len(want)], ",") != strings.Join(want, ",") {
		t.Fatalf("list: %v, want it to start with %v", listed, want)
	}
	t.Logf("list: %d experiments over pages of 2, following next_cursor", len(listed))

	change := proto.Clone(got).(*experimentsv5.Experiment)
	change.Name = proto.String("Renamed experiment")
	update := &experimentsv5.UpdateExperimentRequest{
		OrganizationId: w.org, ExperimentId: experiment.Id, Experiment: change,
	}
	_, err = w.client.UpdateExperiment(metadata.AppendToOutgoingContext(w.ctx, "if-match", `"stale"`), update)
	if status.Code(err) != codes.Aborted {
		t.Fatalf("update with a stale if-match: %v, want ABORTED", err)
	}
	var header metadata.MD
	updated, err := w.client.UpdateExperiment(metadata.AppendToOutgoingContext(w.ctx, "if-match", etag), update, grpc.Header(&header))
	if err != nil || updated.GetName() != "Renamed experiment" || updated.Etag == experiment.Etag {
		t.Fatalf("update: %v, %v", err, updated)
	}
	t.Log("update: OK with if-match, ABORTED with a stale one")

	_, err = w.client.CreateExperiment(w.ctx, &experimentsv5.CreateExperimentRequest{
		OrganizationId: w.org, Experiment: newExperiment(t, w, "Too much", [2]int32{90, 20}),
	})
	refused := status.Convert(err)
	if refused.Code() != codes.InvalidArgument {
		t.Fatalf("invalid create: %v, want INVALID_ARGUMENT", err)
	}
	var fields []string
	for _, detail := range refused.Details() {
		if badRequest, ok := detail.(*errdetails.BadRequest); ok {
			for _, violation := range badRequest.GetFieldViolations() {
				fields = append(fields, violation.GetField())
			}
		}
	}
	if strings.Join(fields, ",") != "groups" {
		t.Fatalf("invalid create: field violations %v (details %v), want groups", fields, refused.Details())
	}
	t.Logf("invalid create: INVALID_ARGUMENT, BadRequest naming %v", fields)

	_, err = w.client.DeleteExperiment(metadata.AppendToOutgoingContext(w.ctx, "if-match", header.Get("etag")[0]),
		&experimentsv5.DeleteExperimentRequest{OrganizationId: w.org, ExperimentId: experiment.Id})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = w.client.GetExperiment(w.ctx, &experimentsv5.GetExperimentRequest{
		OrganizationId: w.org, ExperimentId: experiment.Id,
	})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("get after delete: %v, want NOT_FOUND", err)
	}
	t.Log("delete: OK, then get: NOT_FOUND")
}
