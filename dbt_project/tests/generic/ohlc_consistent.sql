{#- A candle is consistent when high is the largest and low the smallest of its four prices. -#}
{% test ohlc_consistent(model, open='open', high='high', low='low', close='close') %}
    select *
    from {{ model }}
    where {{ high }} < {{ open }}
       or {{ high }} < {{ close }}
       or {{ high }} < {{ low }}
       or {{ low }} > {{ open }}
       or {{ low }} > {{ close }}
{% endtest %}
