# stargate-apiserver and mockdc in one small, non-root image.
#   docker build -t stargate-apiserver:dev .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ ./cmd/stargate-apiserver ./cmd/mockdc

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/stargate-apiserver /out/mockdc /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/stargate-apiserver"]
