//! Kafka against librdkafka's built-in mock cluster (a real Kafka protocol implementation
//! running in process): readings in, dead letters with their reason, updates out.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, spawn_app_with, station_reading};

pub struct Kafka {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    producer: FutureProducer,
}

impl Kafka {
    pub fn start() -> Self {
        let cluster = MockCluster::new(1).expect("mock cluster");
        for (topic, partitions) in [("isobar.readings", 3), ("isobar.readings.dlq", 1), ("isobar.updates", 3)] {
            cluster.create_topic(topic, partitions, 1).expect("topic");
        }
        let producer =
            ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().expect("producer");
        Self { cluster, producer }
    }

    pub fn brokers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    async fn produce(&self, key: &str, payload: &[u8]) {
        self.producer
            .send(FutureRecord::to("isobar.readings").key(key).payload(payload), Duration::from_secs(5))
            .await
            .expect("produced");
    }

    /// The first `n` messages of `topic`, as (key, payload, headers).
    async fn consume(&self, topic: &str, n: usize) -> Vec<(String, Vec<u8>, Vec<(String, String)>)> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", format!("test-{topic}"))
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).unwrap();
        let mut out = Vec::new();
        while out.len() < n {
            let m = tokio::time::timeout(Duration::from_secs(15), consumer.recv())
                .await
                .expect("a message in time")
                .unwrap();
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_owned(), String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned()))
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
                headers,
            ));
        }
        out
    }
}

async fn app(kafka: &Kafka) -> TestApp {
    spawn_app_with(json!({"kafka": {"brokers": kafka.brokers()}})).await
}

#[actix_rt::test]
async fn readings_from_kafka_reach_current_and_history_and_duplicates_are_dropped() {
    let kafka = Kafka::start();
    let app = app(&kafka).await;
    let r = station_reading("KAF1", 5, 6.5);
    kafka.produce("KAF1", r.to_string().as_bytes()).await;
    kafka.produce("KAF1", r.to_string().as_bytes()).await; // a redelivery
    assert!(eventually(15, || async { app.get("/v1/locations/KAF1/current").await.status() == 200 }).await);
    assert_eq!(app.get_json("/v1/locations/KAF1/current").await.1["temperature"], 6.5);
    assert!(
        eventually(5, || async {
            app.metric("isobar_readings_rejected_total{reason=\"duplicate\",source=\"station\"}").await == Some(1.0)
        })
        .await
    );
    assert_eq!(app.get_json("/v1/locations/KAF1/history").await.1["readings"].as_array().unwrap().len(), 1);
    assert_eq!(app.metric("isobar_kafka_consumed_total").await, Some(2.0));
}

#[actix_rt::test]
async fn a_stations_pollutants_from_kafka_give_its_air_quality() {
    use chrono::DurationRound;
    crate::helpers::clear_of_the_hour().await;
    let kafka = Kafka::start();
    let app = app(&kafka).await;
    let hour = chrono::Utc::now().duration_trunc(chrono::Duration::hours(1)).unwrap();
    for k in [1, 0] {
        let at = (hour - chrono::Duration::hours(k)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let r = json!({"location_id": "KAFAQ", "source": "station", "latitude": 40.7, "longitude": -74.0,
            "observed_at": at, "pm2_5": 20.0});
        kafka.produce("KAFAQ", r.to_string().as_bytes()).await;
    }
    assert!(
        eventually(15, || async { app.get("/v1/locations/KAFAQ/air-quality").await.status() == 200 }).await,
        "the second hour makes the NowCast"
    );
    // Two hours of 20 µg/m³: NowCast 20.0, AQI 49 × (200 − 91) / (354 − 91) + 51 → 71.
    let (_, aq) = app.get_json("/v1/locations/KAFAQ/air-quality").await;
    assert_eq!((&aq["aqi"], &aq["category"], &aq["dominant"]), (&json!(71), &json!("moderate"), &json!("pm2_5")));
    assert_eq!(aq["pollutants"][0]["averaged"], 20.0);
}

#[actix_rt::test]
async fn bad_messages_go_to_the_dead_letter_topic_with_the_reason_and_the_consumer_goes_on() {
    let kafka = Kafka::start();
    let app = app(&kafka).await;
    let mut unknown_field = station_reading("KAF2", 3, 1.0);
    unknown_field["colour"] = json!("red");
    let mut out_of_range = station_reading("KAF2", 3, 1.0);
    out_of_range["wind_speed"] = json!(468.66);
    let mut no_coordinates = station_reading("NEWKAF", 3, 1.0);
    no_coordinates.as_object_mut().unwrap().retain(|k, _| k != "latitude" && k != "longitude");
    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(70 * 1024));
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("KAF2", b"not json at all".to_vec(), "not JSON: expected ident at line 1 column 2"),
        ("KAF2", b"[1,2]".to_vec(), "$: expected a JSON object"),
        ("KAF2", unknown_field.to_string().into_bytes(), "colour: unknown field"),
        ("KAF2", out_of_range.to_string().into_bytes(), "wind_speed: must be between 0 and 120"),
        (
            "NEWKAF",
            no_coordinates.to_string().into_bytes(),
            "latitude: location NEWKAF is not known yet: the first reading of a new station needs latitude and longitude",
        ),
        ("KAF2", huge.clone().into_bytes(), "message is 71690 bytes; at most 65536 are accepted"),
    ];
    for (key, payload, _) in &bad {
        kafka.produce(key, payload).await;
    }
    // A good one after the bad ones still gets through.
    kafka.produce("KAF2", station_reading("KAF2", 1, 9.0).to_string().as_bytes()).await;
    assert!(eventually(15, || async { app.get("/v1/locations/KAF2/current").await.status() == 200 }).await);

    let dead = kafka.consume("isobar.readings.dlq", bad.len()).await;
    let mut got: Vec<(String, String)> = dead
        .iter()
        .map(|(_, payload, headers)| {
            let h = |k: &str| headers.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
            assert_eq!(h("source-topic"), "isobar.readings");
            assert!(h("source-partition").parse::<i32>().is_ok());
            assert!(h("source-offset").parse::<i64>().is_ok());
            (String::from_utf8_lossy(&payload[..payload.len().min(40)]).into_owned(), h("error"))
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = bad
        .iter()
        .map(|(_, payload, reason)| {
            (String::from_utf8_lossy(&payload[..payload.len().min(40)]).into_owned(), reason.to_string())
        })
        .collect();
    want.sort();
    assert_eq!(got, want, "the original payloads, each with its reason");
    assert_eq!(app.metric("isobar_kafka_dlq_total{reason=\"out_of_range\"}").await, Some(1.0));
    assert_eq!(app.metric("isobar_kafka_dlq_total{reason=\"too_large\"}").await, Some(1.0));
    assert_eq!(app.metric("isobar_kafka_produced_total{topic=\"dlq\"}").await, Some(6.0));
}

#[actix_rt::test]
async fn every_consensus_update_is_produced_to_the_updates_topic() {
    let kafka = Kafka::start();
    let app = app(&kafka).await;
    assert_eq!(app.post_readings(&station_reading("UPD1", 5, 3.0)).await.0, 202);
    let updates = kafka.consume("isobar.updates", 1).await;
    let (key, payload, _) = &updates[0];
    assert_eq!(key, "UPD1");
    let update: Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(update["type"], "update");
    assert_eq!(update["location_id"], "UPD1");
    assert_eq!(update["seq"], 1);
    // The same document as /current (ages aside: the consumer group took a while to join).
    let mut data = update["data"].clone();
    let mut current = app.get_json("/v1/locations/UPD1/current").await.1;
    for doc in [&mut data, &mut current] {
        doc["sources"][0]["age_seconds"] = json!(0);
    }
    assert_eq!(data, current);
    assert!(
        eventually(5, || async { app.metric("isobar_kafka_produced_total{topic=\"updates\"}").await == Some(1.0) })
            .await
    );
    let (status, ready) = app.get_json("/ready").await;
    assert_eq!(status, 200);
    assert!(ready["dependencies"].as_array().unwrap().contains(&json!({"name": "kafka", "state": "up"})));
}

#[actix_rt::test]
async fn an_anomaly_that_starts_is_produced_to_the_updates_topic() {
    use crate::anomalies::{post_ten_quiet_hours, reading};
    let kafka = Kafka::start();
    let app = app(&kafka).await;
    let ([t, h, p], backup) = post_ten_quiet_hours(&app, "KSPIKE").await;
    let spike = [reading("KSPIKE", "backup", 5, backup), reading("KSPIKE", "station", 5, [t + 15.0, h, p])];
    assert_eq!(app.post_readings(&json!(spike)).await.0, 202);
    // Updates come first (one per applied batch), then the anomaly, keyed by location.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.brokers())
        .set("group.id", "test-anomalies")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["isobar.updates"]).unwrap();
    let anomaly = loop {
        let m = tokio::time::timeout(Duration::from_secs(15), consumer.recv()).await.expect("in time").unwrap();
        let message: Value = serde_json::from_slice(m.payload().unwrap_or_default()).unwrap();
        if message["type"] == "anomaly" {
            assert_eq!(m.key(), Some(&b"KSPIKE"[..]));
            break message;
        }
        assert_eq!(message["type"], "update", "{message}");
    };
    assert_eq!((anomaly["location_id"].as_str(), anomaly["state"].as_str()), (Some("KSPIKE"), Some("started")));
    assert_eq!(
        (anomaly["data"]["kind"].as_str(), anomaly["data"]["source"].as_str()),
        (Some("spike"), Some("station"))
    );
    assert_eq!(anomaly["data"]["value"].as_f64(), Some(t + 15.0));
}

#[actix_rt::test]
async fn a_post_goes_through_the_topic_and_is_acknowledged_before_the_202() {
    let kafka = Kafka::start();
    let app = app(&kafka).await;
    let mut no_coordinates = station_reading("NOCOORD", 1, 1.0);
    no_coordinates.as_object_mut().unwrap().retain(|k, _| k != "latitude" && k != "longitude");
    let (status, body) = app.post_readings(&json!([station_reading("VIAK", 2, 4.5), no_coordinates])).await;
    assert_eq!(status, 202);
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert_eq!(app.metric("isobar_kafka_produced_total{topic=\"readings\"}").await, Some(1.0));
    let on_topic = kafka.consume("isobar.readings", 1).await;
    assert_eq!(on_topic[0].0, "VIAK");
    let produced: Value = serde_json::from_slice(&on_topic[0].1).unwrap();
    assert_eq!(produced["temperature"], 4.5);
    assert!(eventually(15, || async { app.get("/v1/locations/VIAK/current").await.status() == 200 }).await);
}

#[actix_rt::test]
async fn with_the_broker_down_the_service_serves_ready_is_503_and_a_post_is_503_not_dropped() {
    // A closed loopback port: no broker there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app_with(json!({"kafka": {"brokers": format!("127.0.0.1:{port}")}})).await;
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get_json("/v1/locations/2988507").await.0, 200);
    let (status, ready) = app.get_json("/ready").await;
    assert_eq!(status, 503);
    let kafka = ready["dependencies"].as_array().unwrap().iter().find(|d| d["name"] == "kafka").unwrap().clone();
    assert_eq!(kafka["state"], "down");
    assert!(kafka["detail"].as_str().unwrap().starts_with("kafka: "), "{kafka}");

    let r = app.client.post(app.url("/v1/readings")).json(&station_reading("DOWN1", 1, 2.0)).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().starts_with("Kafka did not acknowledge the readings"), "{body}");
}

#[actix_rt::test]
async fn provider_readings_go_through_the_topic_too() {
    let kafka = Kafka::start();
    let server = wiremock::MockServer::start().await;
    crate::upstream::mount_met(&server, 200).await;
    let mut config = crate::upstream::sources(&server, &["met_norway"], json!({"sources": {"cold_wait_ms": 15000}}));
    crate::helpers::merge(&mut config, json!({"kafka": {"brokers": kafka.brokers()}}));
    let app = spawn_app_with(config).await;
    let (status, body) = app.get_json("/v1/locations/2643743/current").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["temperature"].clone(), body["weather_code"].clone()), (json!(26.5), json!(2)));
    let on_topic = kafka.consume("isobar.readings", 1).await;
    let reading: Value = serde_json::from_slice(&on_topic[0].1).unwrap();
    assert_eq!(on_topic[0].0, "2643743");
    assert_eq!((reading["source"].clone(), reading["weather_code"].clone()), (json!("met-norway"), json!(2)));
}

/// Readings applied by `app` (every source).
async fn applied(app: &TestApp) -> f64 {
    let mut sum = 0.0;
    for source in ["station", "other"] {
        sum += app.metric(&format!("isobar_readings_ingested_total{{source=\"{source}\"}}")).await.unwrap_or(0.0);
    }
    sum
}

/// Whether, within 40 s, both instances own some of the three partitions and together all.
async fn split(a: &TestApp, b: &TestApp) -> bool {
    eventually(40, || async {
        let (pa, pb) = (
            a.metric("isobar_kafka_assigned_partitions").await.unwrap_or(0.0),
            b.metric("isobar_kafka_assigned_partitions").await.unwrap_or(0.0),
        );
        pa > 0.0 && pb > 0.0 && pa + pb == 3.0
    })
    .await
}

#[actix_rt::test]
async fn two_instances_split_the_partitions_and_a_revoked_location_is_handed_over_with_its_state() {
    let kafka = Kafka::start();
    let redis = crate::servers::Redis::start();
    let config = json!({"kafka": {"brokers": kafka.brokers()}, "redis": {"url": redis.url()}});
    let ids: Vec<String> = (0..12).map(|i| format!("OWN{i:02}")).collect();

    let a = spawn_app_with(config.clone()).await;
    for (i, id) in ids.iter().enumerate() {
        kafka.produce(id, station_reading(id, 10, i as f64).to_string().as_bytes()).await;
    }
    assert!(eventually(30, || async { applied(&a).await == 12.0 }).await, "the first instance applies all 12");
    assert_eq!(a.metric("isobar_kafka_assigned_partitions").await, Some(3.0));

    // A second instance joins the group: the first gives up the partitions that move
    // (cooperatively: it keeps consuming the others) and hands their locations over.
    let b = spawn_app_with(config).await;
    assert!(split(&a, &b).await, "the partitions are split between the two instances");

    // A second source reports every location; each reading is applied once, by the owner.
    for (i, id) in ids.iter().enumerate() {
        let mut reading = station_reading(id, 5, 20.0 + i as f64);
        reading["source"] = json!("buoy");
        kafka.produce(id, reading.to_string().as_bytes()).await;
    }
    assert!(
        eventually(30, || async { applied(&a).await + applied(&b).await == 24.0 }).await,
        "every second-round reading is applied by exactly one instance"
    );
    let (on_a, on_b) = (applied(&a).await - 12.0, applied(&b).await);
    assert!(on_a > 0.0 && on_b > 0.0, "both instances own locations: {on_a} on the first, {on_b} on the second");
    // Exactly the locations that moved were handed over; those that stayed never stopped.
    assert_eq!(a.metric("isobar_kafka_locations_handed_over_total").await, Some(on_b));
    // Whoever owns a location now continued from the state handed over: both sources count.
    // The owner of each location continued from the state handed over (a location that
    // moved to the second instance got the first reading's state from Redis only), and the
    // other instance answers the same: its view follows the owner's updates.
    let sources = |current: Value| -> Vec<(String, f64)> {
        let mut s: Vec<_> = current["sources"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        (s["name"].as_str().unwrap_or("").to_owned(), s["temperature"].as_f64().unwrap_or(f64::NAN))
                    })
                    .collect()
            })
            .unwrap_or_default();
        s.sort_by(|x, y| x.0.cmp(&y.0));
        s
    };
    for (i, id) in ids.iter().enumerate() {
        let path = format!("/v1/locations/{id}/current");
        let want = vec![("buoy".to_owned(), 20.0 + i as f64), ("station".to_owned(), i as f64)];
        for (name, app) in [("first", &a), ("second", &b)] {
            let ok = eventually(10, || async { sources(app.get_json(&path).await.1) == want }).await;
            assert!(ok, "{id} on the {name} instance: {:?}", sources(app.get_json(&path).await.1));
        }
    }
    // A location first seen after both started, owned by one: the other knows it too
    // and follows its updates.
    kafka.produce("OWNLATE", station_reading("OWNLATE", 2, 7.5).to_string().as_bytes()).await;
    for app in [&a, &b] {
        assert!(
            eventually(15, || async { app.get_json("/v1/locations/OWNLATE/current").await.1["temperature"] == 7.5 })
                .await
        );
    }
    let mut later = station_reading("OWNLATE", 1, 8.5);
    later["source"] = json!("buoy");
    kafka.produce("OWNLATE", later.to_string().as_bytes()).await;
    for app in [&a, &b] {
        assert!(
            eventually(15, || async { app.get_json("/v1/locations/OWNLATE/current").await.1["sources_count"] == 2 })
                .await,
            "both instances show the owner's latest update"
        );
    }

    // The first instance shuts down; once the group gives its partitions to the second
    // (the mock cluster takes up to the 10 s session timeout), the second continues every
    // location from the state in Redis.
    drop(a);
    assert!(
        eventually(25, || async { b.metric("isobar_kafka_assigned_partitions").await == Some(3.0) }).await,
        "the second instance owns every partition"
    );
    for (i, id) in ids.iter().enumerate() {
        let mut third = station_reading(id, 1, 30.0 + i as f64);
        third["source"] = json!("ship");
        kafka.produce(id, third.to_string().as_bytes()).await;
    }
    for id in &ids {
        let path = format!("/v1/locations/{id}/current");
        let ok = eventually(15, || async { b.get_json(&path).await.1["sources_count"] == 3 }).await;
        assert!(ok, "{id} continues on the second instance: {:?}", sources(b.get_json(&path).await.1));
    }
}

/// `reading` without its coordinates: a known station's readings need none.
fn without_coordinates(mut reading: Value) -> Value {
    if let Some(fields) = reading.as_object_mut() {
        fields.remove("latitude");
        fields.remove("longitude");
    }
    reading
}

#[actix_rt::test]
async fn a_station_registered_on_another_instance_is_known_from_redis_when_its_partition_moves_here() {
    let kafka = Kafka::start();
    let redis = crate::servers::Redis::start();
    let config = json!({"kafka": {"brokers": kafka.brokers()}, "redis": {"url": redis.url()}});
    let a = spawn_app_with(config.clone()).await;
    let b = spawn_app_with(config).await;
    assert!(split(&a, &b).await, "the partitions are split between the two instances");
    // Twelve new stations, each registered by its owner from its first reading (one at a
    // time, to see whose it is). The other instance started before them and is never
    // asked about them.
    let ids: Vec<String> = (0..12).map(|i| format!("FAR{i:02}")).collect();
    let mut on_a = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let was = applied(&a).await;
        kafka.produce(id, station_reading(id, 10, i as f64).to_string().as_bytes()).await;
        assert!(eventually(30, || async { applied(&a).await + applied(&b).await == i as f64 + 1.0 }).await);
        if applied(&a).await > was {
            on_a.push(id.clone());
        }
    }
    let far = on_a.first().expect("the first instance owns some of the stations").clone();

    // A reading without coordinates posted to the instance that never saw the station:
    // accepted (it knows the station from Redis), and applied by the owner.
    let was = applied(&a).await + applied(&b).await;
    let (status, body) = b.post_readings(&without_coordinates(station_reading(&far, 8, 9.5))).await;
    assert_eq!(status, 202, "{body}");
    assert!(eventually(30, || async { applied(&a).await + applied(&b).await == was + 1.0 }).await);

    // The first instance goes; the second owns every partition, the first's stations too.
    drop(a);
    assert!(
        eventually(25, || async { b.metric("isobar_kafka_assigned_partitions").await == Some(3.0) }).await,
        "the second instance owns every partition"
    );
    // Readings without coordinates for every station: each is applied by the second
    // instance, none dead-lettered as an unknown location.
    let before = applied(&b).await;
    for (i, id) in ids.iter().enumerate() {
        let reading = without_coordinates(station_reading(id, 5, 20.0 + i as f64));
        kafka.produce(id, reading.to_string().as_bytes()).await;
    }
    assert!(
        eventually(30, || async { applied(&b).await == before + 12.0 }).await,
        "applied {} of 12; dead letters {:?}",
        applied(&b).await - before,
        b.metric("isobar_kafka_dlq_total{reason=\"unknown_location\"}").await
    );
    assert_eq!(b.metric("isobar_kafka_dlq_total{reason=\"unknown_location\"}").await, Some(0.0));
    for (i, id) in ids.iter().enumerate() {
        let (_, current) = b.get_json(&format!("/v1/locations/{id}/current")).await;
        assert_eq!(current["temperature"], json!(20.0 + i as f64), "{id}");
    }
}
