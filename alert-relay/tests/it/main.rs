//! Integration tests of alert-relay by behaviour, with a recording fake ntfy (wiremock).

mod fakes;
mod helpers;
mod pg_server;

mod ack_page;
mod api;
mod cli;
mod console;
mod console_history;
mod delivery;
mod ha;
mod heartbeat;
mod hung;
mod intake;
mod limits;
mod links;
mod logs;
mod pg_outage;
mod pg_tls;
mod postgres;
mod proxy;
mod reload;
mod replicas;
mod restart;
mod runbook_pages;
mod schedules;
mod secrets;
mod silence;
mod sim;
mod slowclients;
mod steps;
mod storage;
mod store_failure;
mod targets;
mod vendors;
